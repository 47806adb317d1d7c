/**
 * A trained probe on disk: a folder with `weights.safetensors` (every parameter, F32) and `probe.json`
 * (kind, hyper-parameters, label names, threshold, validation metrics, the model fingerprint and L, d).
 * Saving is atomic: the folder is written under a temp name and renamed into place.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { dirname, join, basename } from "node:path";
import { writeFileAtomic } from "../util/atomic.js";
import { ModelMismatchError, OnepassError, ProbeError } from "../errors.js";
import { openSafetensors, writeSafetensors } from "../model/safetensors.js";
import type { MetricReport } from "./metrics.js";
import { Probe, type ProbeConfig, type ProbeShape } from "./probe.js";

export const PROBE_JSON = "probe.json";
export const PROBE_WEIGHTS = "weights.safetensors";

export interface ProbeModelInfo {
  /** LoadedModel.fingerprint of the model whose hidden states the probe was trained on. */
  fingerprint: string;
  name?: string;
  /** Transformer blocks L (the probe sees L+1 layers). */
  layers: number;
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
  tokenization?: { addBos: boolean; template: "raw" | "chat"; maxTokens: number | null };
  /** Mean ± std of the validation metric over seeds, when a search/re-run produced it. */
  seeds?: { metric: string; mean: number; std: number; values: number[] };
  parameterCount: { aggregator: number; head: number };
  createdAt: string;
}

export type ProbeMetaInput = Omit<ProbeMeta, "format" | "version" | "config" | "shape" | "parameterCount" | "createdAt">;

/** Writes the probe folder atomically (replacing an existing one). */
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
  const parent = dirname(dir);
  mkdirSync(parent, { recursive: true });
  const tmp = join(parent, `.${basename(dir)}.${process.pid}.tmp`);
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
  writeFileAtomic(join(tmp, PROBE_JSON), JSON.stringify(full, null, 2) + "\n");
  if (existsSync(dir)) {
    const old = join(parent, `.${basename(dir)}.${process.pid}.old`);
    renameSync(dir, old);
    renameSync(tmp, dir);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameSync(tmp, dir);
  }
  return full;
}

function need<T>(ok: boolean, value: T, file: string, field: string, what: string): T {
  if (!ok) throw new ProbeError(`missing or invalid ${what}`, { file, field });
  return value;
}

function parseMeta(file: string, text: string): ProbeMeta {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (err) {
    throw new ProbeError(`not valid JSON: ${(err as Error).message}`, { file }, { cause: err });
  }
  const o = j as Record<string, any>;
  need(typeof o === "object" && o !== null && o.format === "onepass-probe", 0, file, "format", '"onepass-probe" marker');
  need(o.version === 1, 0, file, "version", "version (expected 1)");
  need(typeof o.config === "object" && ["pooling", "scoring", "mha", "fixed"].includes(o.config?.kind), 0, file, "config.kind", "probe kind");
  for (const k of ["layers", "dim", "classes"]) need(Number.isInteger(o.shape?.[k]) && o.shape[k] > 0, 0, file, `shape.${k}`, "positive integer");
  need(Array.isArray(o.labelNames) && o.labelNames.length === o.shape.classes && o.labelNames.every((s: unknown) => typeof s === "string"), 0, file, "labelNames", `list of ${o.shape?.classes} label names`);
  need(typeof o.model?.fingerprint === "string" && o.model.fingerprint.length > 0, 0, file, "model.fingerprint", "model fingerprint");
  need(o.threshold === undefined || typeof o.threshold === "number", 0, file, "threshold", "number");
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
  const meta = parseMeta(jsonPath, readFileSync(jsonPath, "utf8"));
  if (options.expectFingerprint !== undefined) checkProbeModel(meta, options.expectFingerprint, jsonPath, "loaded");
  let probe: Probe;
  try {
    probe = new Probe(meta.config, meta.shape);
  } catch (err) {
    throw new ProbeError(`cannot build the probe: ${(err as Error).message}`, { file: jsonPath, field: "config" }, { cause: err });
  }
  const weightsPath = join(dir, PROBE_WEIGHTS);
  let st: ReturnType<typeof openSafetensors>;
  try {
    st = openSafetensors(weightsPath);
  } catch (err) {
    throw asProbeError(err);
  }
  try {
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
