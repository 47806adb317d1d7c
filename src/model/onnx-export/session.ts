/**
 * A DecoderSession over an existing decoder export (Optimum / onnx-community / ORT GenAI I/O names) whose graph
 * already carries the stacked `hidden_states` output (see graph/surgery.ts). The export's own inputs decide the
 * feeds: input_ids (required), attention_mask, position_ids, logits_positions (our builder's graphs) and
 * past_key_values.{i}.key/.value (KV cache; without them every forward re-runs the whole sequence). KV tensors
 * stay in the export's dtype; float16 logits are widened to float32.
 */
import { availableParallelism } from "node:os";
import * as ort from "onnxruntime-node";
import { ContextOverflowError, GraphError, InvalidArgumentError } from "../../errors.js";
import { HiddenStates } from "../../engine/hidden.js";
import type { DecoderSession, ForwardOptions, ForwardPass } from "../../engine/types.js";
import { HIDDEN_STATES_OUTPUT } from "../../graph/surgery.js";
import { f16ToF32 } from "../gguf/dequant.js";
import type { ModelSpec } from "../spec.js";

export interface OnnxExportSessionOptions {
  /** ORT intra-op threads (default: all cores). */
  threads?: number;
  /** ORT execution providers (default ["cpu"]). */
  executionProviders?: string[];
  /** Extra ORT session config entries ("key": "value"). */
  sessionConfig?: Record<string, string>;
}

/** The model to open: a file path, or model bytes plus the folder its external data files are in. */
export type OnnxModelSource = { path: string } | { bytes: Uint8Array; externalDataDir: string; name: string };

const pastName = (i: number, kind: "key" | "value") => `past_key_values.${i}.${kind}`;
const presentName = (i: number, kind: "key" | "value") => `present.${i}.${kind}`;
const KNOWN_INPUTS = new Set(["input_ids", "attention_mask", "position_ids", "logits_positions"]);

/** Which optional inputs the export has, and the dtype of its KV cache. */
interface ExportIo {
  mask: boolean;
  positionIds: boolean;
  logitsPositions: boolean;
  /** KV-cache element type, or undefined when the export takes no past (recompute mode). */
  pastType?: "float32" | "float16";
  taps: boolean;
}

function inspectIo(session: ort.InferenceSession, spec: ModelSpec, file: string): ExportIo {
  const inputs = new Map(session.inputMetadata.map((m) => [m.name, m]));
  if (!inputs.has("input_ids")) throw new GraphError(`the model has no input_ids input`, { file, field: "input_ids" });
  if (!session.outputNames.includes("logits")) throw new GraphError(`the model has no logits output`, { file, field: "logits" });
  let pastType: ExportIo["pastType"];
  const pastKey = inputs.get(pastName(0, "key"));
  if (pastKey !== undefined) {
    if (!pastKey.isTensor || (pastKey.type !== "float32" && pastKey.type !== "float16")) {
      throw new GraphError(`KV cache input must be float32 or float16`, { file, field: pastKey.name });
    }
    pastType = pastKey.type;
    for (let i = 0; i < spec.layers; i++) {
      for (const kind of ["key", "value"] as const) {
        if (!inputs.has(pastName(i, kind))) throw new GraphError(`KV cache input missing (config has ${spec.layers} layers)`, { file, field: pastName(i, kind) });
        if (!session.outputNames.includes(presentName(i, kind))) throw new GraphError(`KV cache output missing`, { file, field: presentName(i, kind) });
      }
    }
  }
  for (const name of inputs.keys()) {
    if (!KNOWN_INPUTS.has(name) && !/^past_key_values\.\d+\.(key|value)$/.test(name)) {
      throw new GraphError(`the model has an input onepass does not know how to feed`, { file, field: name });
    }
  }
  return {
    mask: inputs.has("attention_mask"),
    positionIds: inputs.has("position_ids"),
    logitsPositions: inputs.has("logits_positions"),
    pastType,
    taps: session.outputNames.includes(HIDDEN_STATES_OUTPUT),
  };
}

/** Opens an ORT session over an export and wraps it as a DecoderSession. */
export async function openOnnxExportSession(source: OnnxModelSource, spec: ModelSpec, options: OnnxExportSessionOptions = {}): Promise<DecoderSession> {
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new InvalidArgumentError(`threads must be a positive integer, got ${threads}`, { field: "threads" });
  const file = "path" in source ? source.path : source.name;
  const config: Record<string, string> = { ...(options.sessionConfig ?? {}) };
  // From memory, ORT resolves external-data locations against this folder (the export's onnx/ folder).
  if (!("path" in source)) config["session.model_external_initializers_file_folder_path"] = source.externalDataDir;
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: options.executionProviders ?? ["cpu"],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    executionMode: "sequential",
    extra: nestConfig(config),
  };
  let session: ort.InferenceSession;
  try {
    session = "path" in source ? await ort.InferenceSession.create(source.path, sessionOptions) : await ort.InferenceSession.create(source.bytes, sessionOptions);
  } catch (e) {
    throw new GraphError(`ONNX Runtime cannot load the model: ${(e as Error).message}`, { file }, { cause: e });
  }
  try {
    return new OnnxExportSession(session, spec, inspectIo(session, spec, file), file);
  } catch (e) {
    await session.release();
    throw e;
  }
}

/** ORT wants nested objects for dotted config keys: {"a.b": "1"} → {a: {b: "1"}}. */
function nestConfig(cfg: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(cfg)) {
    const parts = k.split(".");
    let node = out;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    node[parts[parts.length - 1]] = v;
  }
  return out;
}

function emptyKv(type: "float32" | "float16", kvHeads: number, headDim: number): ort.Tensor {
  return type === "float32"
    ? new ort.Tensor("float32", new Float32Array(0), [1, kvHeads, 0, headDim]) // [1, kvH, 0, hd]
    : new ort.Tensor("float16", new Uint16Array(0), [1, kvHeads, 0, headDim]); // [1, kvH, 0, hd]
}

class OnnxExportSession implements DecoderSession {
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly hasTaps: boolean;
  private past: { key: ort.Tensor; value: ort.Tensor }[] = []; // each [1, kvH, pastLength, hd]
  /** Tokens so far, kept only in recompute mode (no KV-cache inputs). */
  private history: number[] = [];
  private length = 0;
  private disposed = false;

  constructor(
    private readonly session: ort.InferenceSession,
    private readonly spec: ModelSpec,
    private readonly io: ExportIo,
    private readonly file: string,
  ) {
    this.vocabSize = spec.vocabSize;
    this.contextLength = spec.contextLength;
    this.hasTaps = io.taps;
    this.reset();
  }

  get pastLength(): number {
    return this.length;
  }

  reset(): void {
    const { kvHeads, headDim, layers } = this.spec;
    const type = this.io.pastType;
    this.past = type === undefined ? [] : Array.from({ length: layers }, () => ({ key: emptyKv(type, kvHeads, headDim), value: emptyKv(type, kvHeads, headDim) }));
    this.history = [];
    this.length = 0;
  }

  truncate(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.length) throw new InvalidArgumentError(`truncate(${n}) outside [0, ${this.length}]`, { field: "n" });
    if (n === this.length) return;
    if (n === 0) return this.reset();
    this.history = this.history.slice(0, n);
    const { kvHeads, headDim } = this.spec;
    const len = this.length;
    const cut = (t: ort.Tensor): ort.Tensor => {
      const src = t.data as Float32Array | Uint16Array; // [1, kvH, len, hd]
      const dst = src instanceof Float32Array ? new Float32Array(kvHeads * n * headDim) : new Uint16Array(kvHeads * n * headDim); // [1, kvH, n, hd]
      for (let h = 0; h < kvHeads; h++) dst.set(src.subarray(h * len * headDim, (h * len + n) * headDim), h * n * headDim);
      return dst instanceof Float32Array ? new ort.Tensor("float32", dst, [1, kvHeads, n, headDim]) : new ort.Tensor("float16", dst, [1, kvHeads, n, headDim]);
    };
    this.past = this.past.map((p) => ({ key: cut(p.key), value: cut(p.value) }));
    this.length = n;
  }

  async forward(tokens: readonly number[], options: ForwardOptions = {}): Promise<ForwardPass> {
    if (this.disposed) throw new InvalidArgumentError("forward() on a disposed session", { field: "session" });
    const T = tokens.length;
    if (T === 0) throw new InvalidArgumentError("forward() needs at least one token", { field: "tokens" });
    if (this.length + T > this.contextLength) {
      throw new ContextOverflowError(`${this.length} cached + ${T} new tokens exceed the context of ${this.contextLength}`, { file: this.file, field: "context_length" });
    }
    const wantHidden = options.hidden === true;
    if (wantHidden && !this.hasTaps) throw new InvalidArgumentError("hidden states requested from a model without the hidden_states output", { field: "taps" });
    tokens.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new InvalidArgumentError(`token id ${id} outside [0, ${this.vocabSize})`, { field: "tokens", offset: t });
    });

    // With a KV cache the run covers only the new tokens; without one, the whole sequence again.
    const cached = this.io.pastType !== undefined;
    const runTokens = cached ? [...tokens] : [...this.history, ...tokens];
    const start = cached ? this.length : 0; // position of runTokens[0]
    const R = runTokens.length;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(runTokens.map(BigInt)), [1, R]), // [1, R]
    };
    if (this.io.mask) feeds.attention_mask = new ort.Tensor("int64", new BigInt64Array(start + R).fill(1n), [1, start + R]); // [1, past+R]
    if (this.io.positionIds) feeds.position_ids = new ort.Tensor("int64", BigInt64Array.from({ length: R }, (_, t) => BigInt(start + t)), [1, R]); // [1, R]
    const all = options.logits === "all";
    const wantedRows = all ? T : 1; // rows of logits returned
    if (this.io.logitsPositions) {
      feeds.logits_positions = new ort.Tensor("int64", BigInt64Array.from({ length: wantedRows }, (_, i) => BigInt(R - wantedRows + i)), [wantedRows]); // [P]
    }
    const fetches = ["logits"];
    for (let i = 0; i < this.past.length; i++) {
      feeds[pastName(i, "key")] = this.past[i].key;
      feeds[pastName(i, "value")] = this.past[i].value;
      fetches.push(presentName(i, "key"), presentName(i, "value"));
    }
    if (wantHidden) fetches.push(HIDDEN_STATES_OUTPUT);

    const t0 = performance.now();
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run(feeds, fetches);
    } catch (e) {
      throw new GraphError(`ONNX Runtime run failed: ${(e as Error).message}`, { file: this.file, field: "forward" }, { cause: e });
    }
    const runMs = performance.now() - t0;

    for (let i = 0; i < this.past.length; i++) this.past[i] = { key: out[presentName(i, "key")] as ort.Tensor, value: out[presentName(i, "value")] as ort.Tensor };
    if (!cached) this.history.push(...tokens);
    this.length += T;

    // logits [1, rows, V]: keep the last `wantedRows` rows, as float32.
    const V = this.vocabSize;
    const logitsTensor = out.logits as ort.Tensor;
    const rows = logitsTensor.dims[1];
    if (logitsTensor.dims.length !== 3 || logitsTensor.dims[2] !== V || rows < wantedRows) {
      throw new GraphError(`logits have shape [${logitsTensor.dims}], expected [1, ≥${wantedRows}, ${V}]`, { file: this.file, field: "logits" });
    }
    const logits = toFloat32(logitsTensor, (rows - wantedRows) * V, rows * V); // [wantedRows, V]
    const result: ForwardPass = { logits, positions: wantedRows, runMs };
    if (wantHidden) {
      const h = out[HIDDEN_STATES_OUTPUT] as ort.Tensor; // [L+1, 1, R, d]
      const { layers, dim } = this.spec;
      if (h.type !== "float32" || h.dims.length !== 4 || h.dims[0] !== layers + 1 || h.dims[2] !== R || h.dims[3] !== dim) {
        throw new GraphError(`hidden_states have shape [${h.dims}] (${h.type}), expected [${layers + 1}, 1, ${R}, ${dim}] float32`, { file: this.file, field: HIDDEN_STATES_OUTPUT });
      }
      const all = new HiddenStates(layers + 1, R, dim, h.data as Float32Array);
      result.hidden = R === T ? all : all.sliceTokens(R - T, R);
    }
    return result;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.past = [];
    await this.session.release();
  }
}

/** Elements [from, to) of a float32 or float16 tensor as float32. */
function toFloat32(t: ort.Tensor, from: number, to: number): Float32Array {
  if (t.type === "float32") return (t.data as Float32Array).slice(from, to);
  if (t.type === "float16") {
    const src = t.data as Uint16Array;
    const out = new Float32Array(to - from); // [to - from]
    for (let i = from; i < to; i++) out[i - from] = f16ToF32(src[i]);
    return out;
  }
  throw new GraphError(`logits have type ${t.type}, expected float32 or float16`, { field: "logits" });
}
