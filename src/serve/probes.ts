/**
 * Probes as the server holds them: a name, the loaded artifact, and a policy — `annotate` (classify and report)
 * or `block` (refuse before decoding) — with the labels it flags. Specs come from the CLI as `DIR[:POLICY]`,
 * e.g. `probes/safety:block=unsafe` or `probes/sentiment:annotate`.
 */
import { existsSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { InvalidArgumentError } from "../errors.js";
import type { LoadedProbe } from "../probe/artifact.js";
import type { Classification, ResponseReading } from "../probe/live.js";
import { loadProbes } from "../probe/live.js";
import type { ProbeResult, ResponseProbeResult } from "./protocol.js";

export interface ProbeSpec {
  /** The probe folder (weights.safetensors + probe.json). */
  dir: string;
  /** The name requests and responses use (default: the folder's name). */
  name?: string;
  /** "annotate" (default) or "block". */
  policy?: "annotate" | "block";
  /** Labels this probe flags (and, under "block", refuses). Default: none for annotate; required for block. */
  labels?: string[];
}

export interface ServedProbe {
  name: string;
  loaded: LoadedProbe;
  policy: "annotate" | "block";
  flags: Set<string>;
}

/** The probes `onepass serve` loads when given none: trained on stories260K by `npm run build:probes`. */
export function builtinProbeSpecs(): ProbeSpec[] {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../../assets/probes");
  const specs: ProbeSpec[] = [
    { dir: resolve(root, "sentiment"), policy: "annotate" },
    { dir: resolve(root, "safety"), policy: "annotate", labels: ["toxic"] },
  ];
  return specs.filter((s) => existsSync(s.dir));
}

/** `DIR`, `DIR:annotate`, `DIR:annotate=a,b`, `DIR:block=a,b` (optionally `NAME=DIR...`); `flag` names the option in errors. */
export function parseProbeSpec(text: string, flag = "--probe"): ProbeSpec {
  let rest = text;
  let name: string | undefined;
  const eq = rest.indexOf("=");
  const colon = rest.lastIndexOf(":");
  // NAME=DIR… when the first "=" comes before any ":" policy part
  if (eq > 0 && (colon < 0 || eq < colon) && !/^(annotate|block)$/.test(rest.slice(0, eq))) {
    name = rest.slice(0, eq);
    rest = rest.slice(eq + 1);
  }
  const m = /^(.*):(annotate|block)(?:=([^:]*))?$/.exec(rest);
  if (m === null) return { dir: rest, ...(name !== undefined ? { name } : {}) };
  const labels = m[3] !== undefined ? m[3].split(",").map((s) => s.trim()).filter((s) => s.length > 0) : undefined;
  if (m[2] === "block" && (labels === undefined || labels.length === 0)) {
    throw new InvalidArgumentError(`'${text}': block needs the labels it refuses, e.g. ${m[1]}:block=unsafe`, { field: flag });
  }
  return { dir: m[1], ...(name !== undefined ? { name } : {}), policy: m[2] as "annotate" | "block", ...(labels !== undefined ? { labels } : {}) };
}

/** `flag` names the option in errors (--probe, --response-probe). */
export function loadServedProbes(specs: readonly ProbeSpec[], fingerprint: string, flag = "--probe"): ServedProbe[] {
  const out: ServedProbe[] = [];
  for (const spec of specs) {
    const [loaded] = loadProbes([spec.dir], fingerprint);
    const name = spec.name ?? basename(resolve(spec.dir));
    if (out.some((p) => p.name === name)) throw new InvalidArgumentError(`two probes are named '${name}' (name one: NAME=DIR)`, { field: flag });
    const labels = spec.labels ?? [];
    for (const l of labels) {
      if (!loaded.meta.labelNames.includes(l)) {
        throw new InvalidArgumentError(`probe '${name}' has no label '${l}' (labels: ${loaded.meta.labelNames.join(", ")})`, { file: spec.dir, field: flag });
      }
    }
    out.push({ name, loaded, policy: spec.policy ?? "annotate", flags: new Set(labels) });
  }
  return out;
}

/** A live Classification as the API reports it. */
export function toProbeResult(c: Classification, probe: ServedProbe, layerWeights: boolean): ProbeResult {
  return {
    label: c.label,
    probabilities: c.probabilities,
    flagged: probe.flags.has(c.label),
    blocked: c.blocks,
    threshold: c.threshold ?? null,
    probe_ms: c.probeMs,
    tokens: c.tokens,
    ...(layerWeights && c.layerWeights !== undefined ? { layer_weights: c.layerWeights } : {}),
    ...(c.warnings.length > 0 ? { warnings: c.warnings } : {}),
  };
}

/**
 * A response probe's latest reading as the API reports it: `probeMs` is the time spent on this probe over all
 * tokens so far, `history` the label changes (the first reading included).
 */
export function toResponseResult(
  r: ResponseReading,
  probe: ServedProbe,
  o: { probeMs: number; history: Array<{ tokens: number; label: string }>; layerWeights: boolean; warnings: string[] },
): ResponseProbeResult {
  return {
    label: r.label,
    probabilities: r.probabilities,
    flagged: probe.flags.has(r.label),
    blocked: r.blocks,
    threshold: probe.loaded.probe.shape.classes === 2 ? (probe.loaded.meta.threshold ?? null) : null,
    probe_ms: o.probeMs,
    tokens: r.tokens,
    ...(o.layerWeights && r.layerWeights !== undefined ? { layer_weights: r.layerWeights } : {}),
    ...(o.warnings.length > 0 ? { warnings: o.warnings } : {}),
    history: o.history.map((h) => ({ ...h })),
  };
}
