/**
 * A trained probe on disk: a folder with `weights.safetensors` (every parameter, F32) and `probe.json`
 * (kind, hyper-parameters, label names, threshold, validation metrics, the model fingerprint and L, d).
 * Saving is atomic: the folder is written under a temp name and renamed into place.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync } from "node:fs";
import { dirname, join, basename, resolve } from "node:path";
import { assertRegularFile, fsError, lstatOrUndefined, makeDirs, withFs } from "../util/fs-errors.js";
import { writeFileAtomic } from "../util/atomic.js";
import { InvalidArgumentError, ModelMismatchError, OnepassError, ProbeError } from "../errors.js";
import { openSafetensors, writeSafetensors } from "../model/safetensors.js";
import type { MetricReport } from "./metrics.js";
import { Probe, type ProbeConfig, type ProbeShape } from "./probe.js";
import { validateProbeJson } from "./schema.js";

export const PROBE_JSON = "probe.json";
export const PROBE_WEIGHTS = "weights.safetensors";

export interface ProbeModelInfo {
  /** LoadedModel.fingerprint of the model whose hidden states the probe was trained on. */
  fingerprint: string;
  name?: string;
  /** Transformer blocks L of the model (the probe sees its L + 1 hidden-state layers, shape.layers). */
  blocks: number;
  dim: number;
}

export interface ProbeMeta {
  format: "onepass-probe";
  version: 1;
  config: ProbeConfig;
  shape: ProbeShape;
  labelNames: string[];
  model: ProbeModelInfo;
  /** Binary tasks: decision threshold on P(class 1). */
  threshold?: number;
  /** Training hyper-parameters (lr, batch, weight decay, epochs, seed, ...). */
  hyper?: Record<string, unknown>;
  validation?: MetricReport;
  /** How prompts became tokens for training (from the feature cache): classify must do the same. */
  /** target "response": trained on response tokens (extract --target response), for streaming moderation. */
  tokenization?: { addBos: boolean; template: "raw" | "chat"; maxTokens: number | null; target?: "response" };
  /** Mean ± std of the validation metric over seeds, when a search/re-run produced it. */
  seeds?: { metric: string; mean: number; std: number; values: number[] };
  parameterCount: { aggregator: number; head: number };
  createdAt: string;
  /** sha256 (hex) of weights.safetensors, checked on load (absent in probes saved before it existed). */
  weightsSha256?: string;
}

export type ProbeMetaInput = Omit<ProbeMeta, "format" | "version" | "config" | "shape" | "parameterCount" | "createdAt" | "weightsSha256">;

/** sha256 (hex) of a file's bytes: probe.json records it for weights.safetensors. */
function sha256Of(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/**
 * `target` may be written as a probe folder: it does not exist, or it is an earlier onepass probe folder (only
 * probe.json with the onepass-probe marker and weights.safetensors in it). Anything else, a file, another
 * folder, a feature cache, `.`, is never replaced: InvalidArgumentError naming it.
 */
export function checkProbeTarget(target: string, shown = target): void {
  const st = lstatOrUndefined(target);
  if (st === undefined) return;
  const refuse = (why: string) => {
    throw new InvalidArgumentError(`${why}; only an existing onepass probe folder is replaced: choose a new path or remove it yourself`, { file: shown });
  };
  if (!st.isDirectory()) refuse(st.isSymbolicLink() ? "is a symbolic link" : "exists and is not a folder");
  const names = withFs(target, "list", () => readdirSync(target));
  const other = names.find((n) => n !== PROBE_JSON && n !== PROBE_WEIGHTS);
  if (other !== undefined) refuse(`exists and holds ${JSON.stringify(other)}, so it is not an onepass probe folder`);
  if (names.length === 0) return;
  let marker: unknown;
  try {
    marker = (JSON.parse(readFileSync(join(target, PROBE_JSON), "utf8")) as { format?: unknown }).format;
  } catch {
    marker = undefined;
  }
  if (marker !== "onepass-probe") refuse(`exists and its ${PROBE_JSON} is not an onepass probe's`);
}

/** Writes the probe folder atomically, replacing only an existing probe folder (see checkProbeTarget). */
export function saveProbe(dir: string, probe: Probe, meta: ProbeMetaInput): ProbeMeta {
  const full: ProbeMeta = {
    format: "onepass-probe",
    version: 1,
    config: probe.config,
    shape: probe.shape,
    ...meta,
    parameterCount: { aggregator: probe.parameterCount(), head: probe.parameterCount({ includeHead: true }) - probe.parameterCount() },
    createdAt: new Date().toISOString(),
  };
  if (meta.labelNames.length !== probe.shape.classes) {
    throw new ProbeError(`${meta.labelNames.length} label names for ${probe.shape.classes} classes`, { file: join(dir, PROBE_JSON), field: "labelNames" });
  }
  const target = resolve(dir);
  checkProbeTarget(target, dir);
  const parent = dirname(target);
  makeDirs(parent);
  const tmp = join(parent, `.${basename(target)}.${process.pid}.tmp`);
  const old = join(parent, `.${basename(target)}.${process.pid}.old`);
  try {
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [name, t] of probe.params()) tensors[name] = { shape: t.shape, data: Float32Array.from(t.data) };
    if (probe.config.standardize === true) {
      if (probe.norm === undefined) throw new ProbeError("standardised probe has no input statistics", { file: join(dir, PROBE_WEIGHTS), field: "norm.mean" });
      const shape = [probe.shape.layers, probe.shape.dim];
      tensors["norm.mean"] = { shape, data: probe.norm.mean }; // [L+1, d]
      tensors["norm.std"] = { shape, data: probe.norm.std }; // [L+1, d]
    }
    writeSafetensors(join(tmp, PROBE_WEIGHTS), tensors, { format: "onepass-probe", kind: probe.config.kind });
    full.weightsSha256 = sha256Of(join(tmp, PROBE_WEIGHTS));
    writeFileAtomic(join(tmp, PROBE_JSON), JSON.stringify(full, null, 2) + "\n");
    if (existsSync(target)) {
      // Only an earlier probe folder gets here (checkProbeTarget): swap it out, then drop its two files.
      renameSync(target, old);
      renameSync(tmp, target);
      for (const name of [PROBE_JSON, PROBE_WEIGHTS]) rmSync(join(old, name), { force: true });
      rmdirSync(old);
    } else {
      renameSync(tmp, target);
    }
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw fsError(err, dir, "write the probe folder");
  }
  return full;
}

function parseMeta(file: string, text: string): ProbeMeta {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (err) {
    throw new ProbeError(`not valid JSON: ${(err as Error).message}`, { file }, { cause: err });
  }
  const o = j as Record<string, any>;
  // probe.json files written before the rename call the model's block count model.layers
  if (typeof o === "object" && o !== null && typeof o.model === "object" && o.model !== null && o.model.blocks === undefined && Number.isInteger(o.model.layers)) {
    o.model.blocks = o.model.layers;
    delete o.model.layers;
  }
  validateProbeJson(o, file);
  return o as ProbeMeta;
}

/** A malformed weights file is a malformed probe: keep the file/field/offset, change the class. */
function asProbeError(err: unknown): unknown {
  if (err instanceof OnepassError && !(err instanceof ProbeError)) {
    return new ProbeError(err.message.replace(/^[^:]*: /, ""), { file: err.file, field: err.field, offset: err.offset }, { cause: err });
  }
  return err;
}

/** A probe trained on another model than `fingerprint` (the "loaded" or "serving" one) → ModelMismatchError. */
export function checkProbeModel(meta: ProbeMeta, fingerprint: string, file: string, role: "loaded" | "serving"): void {
  if (meta.model.fingerprint !== fingerprint) {
    throw new ModelMismatchError(
      `probe was trained on model ${meta.model.fingerprint.slice(0, 16)}…, not on the ${role} model ${fingerprint.slice(0, 16)}…`,
      { file, field: "model.fingerprint" },
    );
  }
}

export interface LoadedProbe {
  probe: Probe;
  meta: ProbeMeta;
  dir: string;
}

/** Reads a probe folder; with `expectFingerprint`, a probe trained on another model → ModelMismatchError. */
export function loadProbe(dir: string, options: { expectFingerprint?: string } = {}): LoadedProbe {
  const jsonPath = join(dir, PROBE_JSON);
  if (!existsSync(jsonPath)) throw new ProbeError(`no ${PROBE_JSON}: not a probe folder`, { file: dir });
  for (const f of [jsonPath, join(dir, PROBE_WEIGHTS)]) {
    try {
      assertRegularFile(f);
    } catch (err) {
      throw new ProbeError((err as Error).message.replace(/^[^:]*: /, ""), { file: f }, { cause: err });
    }
  }
  const meta = parseMeta(jsonPath, readFileSync(jsonPath, "utf8"));
  if (options.expectFingerprint !== undefined) checkProbeModel(meta, options.expectFingerprint, jsonPath, "loaded");
  let probe: Probe;
  try {
    probe = new Probe(meta.config, meta.shape);
  } catch (err) {
    throw new ProbeError(`cannot build the probe: ${(err as Error).message}`, { file: jsonPath, field: "config" }, { cause: err });
  }
  const weightsPath = join(dir, PROBE_WEIGHTS);
  if (meta.weightsSha256 !== undefined && sha256Of(weightsPath) !== meta.weightsSha256) {
    throw new ProbeError(`${PROBE_WEIGHTS} does not match the weightsSha256 in ${PROBE_JSON} (edited or corrupted)`, { file: weightsPath, field: "weightsSha256" });
  }
  let st: ReturnType<typeof openSafetensors>;
  try {
    st = openSafetensors(weightsPath);
  } catch (err) {
    throw asProbeError(err);
  }
  try {
    // Exactly the tensors this kind needs: extra ones mean probe.json's kind or shape was edited.
    const normTensors = probe.config.standardize === true ? ["norm.mean", "norm.std"] : [];
    const extra = st.tensors.find((t) => !probe.params().has(t.name) && !normTensors.includes(t.name));
    if (extra !== undefined) {
      const why = extra.name.startsWith("norm.") ? "input statistics of a probe whose config.standardize is not true (was probe.json edited?)" : `not a parameter of a ${meta.config.kind} probe (was probe.json's kind edited?)`;
      throw new ProbeError(`tensor ${extra.name} is ${why}`, { file: weightsPath, field: extra.name });
    }
    if (st.metadata.kind !== undefined && st.metadata.kind !== meta.config.kind) {
      throw new ProbeError(`weights were saved by a ${st.metadata.kind} probe, ${PROBE_JSON} says ${meta.config.kind}`, { file: weightsPath, field: "__metadata__.kind" });
    }
    for (const [name, t] of probe.params()) {
      if (!st.has(name)) throw new ProbeError("tensor missing", { file: weightsPath, field: name });
      const info = st.info(name);
      if (info.shape.length !== t.shape.length || info.shape.some((s, i) => s !== t.shape[i])) {
        throw new ProbeError(`shape [${info.shape.join(", ")}], expected [${t.shape.join(", ")}]`, { file: weightsPath, field: name, offset: info.offset });
      }
      try {
        t.data.set(st.read(name));
      } catch (err) {
        throw asProbeError(err);
      }
      const bad = t.data.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) throw new ProbeError(`weight ${bad} is ${t.data[bad]}: the probe was saved from a diverged training run`, { file: weightsPath, field: name });
    }
    if (probe.config.standardize === true) {
      const shape = [probe.shape.layers, probe.shape.dim];
      const read = (name: string): Float32Array => {
        if (!st.has(name)) throw new ProbeError("tensor missing (the probe is standardised)", { file: weightsPath, field: name });
        const info = st.info(name);
        if (info.shape.length !== 2 || info.shape[0] !== shape[0] || info.shape[1] !== shape[1]) {
          throw new ProbeError(`shape [${info.shape.join(", ")}], expected [${shape.join(", ")}]`, { file: weightsPath, field: name, offset: info.offset });
        }
        try {
          return Float32Array.from(st.read(name));
        } catch (err) {
          throw asProbeError(err);
        }
      };
      const norm = { mean: read("norm.mean"), std: read("norm.std") };
      if (norm.std.some((v) => !(v > 0) || !Number.isFinite(v)) || norm.mean.some((v) => !Number.isFinite(v))) {
        throw new ProbeError("input statistics must be finite with std > 0", { file: weightsPath, field: "norm.std" });
      }
      probe.norm = norm;
    }
  } finally {
    st.close();
  }
  return { probe, meta, dir };
}
