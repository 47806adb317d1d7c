/**
 * The one DecoderSession over ONNX Runtime, for every decoder graph onepass runs: the graph built from graph/
 * (cached on disk), the folder `onepass convert --to onnx` writes, and existing Optimum / onnx-community
 * exports tapped by graph surgery. The model's inputs and outputs decide how it is fed (introspected once):
 *
 * - KV cache "append" (our graphs: float32 past_key_values.* + new_key_values.* outputs): per-layer buffers owned
 *   by JS and read by ORT in place; each run copies out only its own rows. By default one ORT session (one copy
 *   of the weights) serves prefill and decode; asking for another MatMulNBits accuracy level for prefill opens a
 *   second session with its own copy.
 * - KV cache "present" (Optimum exports: past_key_values.* in, present.* out, float32 or float16): the present
 *   tensors of one run are the past of the next, in the export's dtype.
 * - "recompute" (no KV-cache inputs): every forward re-runs the whole sequence and returns the new tokens' rows.
 *
 * attention_mask, position_ids and logits_positions are fed when the graph has them; float16 logits are
 * widened to float32. Hidden states come from the same run() that produces the logits.
 */
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import "../util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { ContextOverflowError, GraphError, InvalidArgumentError } from "../errors.js";
import type { LoadedModel, ModelSpec } from "../model/spec.js";
import { decodeF16 } from "../numeric/half.js";
import { defaultGraphCacheDir, ensureDecoderGraph, graphCacheKey } from "../graph/cache.js";
import { withMatMulNBitsAccuracy } from "../onnx/proto.js";
import { TAP, newKvName, stackSummaries, pastName, presentName, type DecoderBuildOptions, type ProgressCallback } from "../graph/decoder.js";
import { HIDDEN_STATES_OUTPUT } from "../graph/surgery.js";
import { HiddenStates } from "../types/hidden.js";
import { TapSummary, acrossRuns, type SummaryRequest } from "../types/summary.js";
import { KvPool, KvSequence } from "./kv-pool.js";
import { cachedCalibration, calibrate, machineProfile, settingsFromFeatures, type RunSettings } from "./tuning.js";
import type { BatchDecoder, DecoderSession, ForwardOptions, ForwardPass, SequenceHandle } from "./types.js";

/** How an ORT session runs, whatever graph it runs. */
export interface OrtRunOptions {
  /** ORT intra-op threads (default: all cores). */
  threads?: number;
  /** ORT execution providers, e.g. ["cuda", "cpu"]; default ["cpu"]. */
  executionProviders?: string[];
  /**
   * MatMulNBits accuracy level for multi-token runs (prefill). Default: the decode level, so that one ORT
   * session (one copy of the weights) serves both. Another level opens a second ORT session over the same
   * weight file, which holds its own copy of the (prepacked) weights: +300 MiB for a 0.5B model; both share the
   * KV cache, which lives in JS. Applies to graphs opened from a file.
   */
  prefillAccuracyLevel?: DecoderBuildOptions["accuracyLevel"];
  /**
   * MatMulNBits accuracy level of the decode session (default 4 = int8 activations: ~1.5× faster at 1 token):
   * the level createDecoderSession builds the graph with, the level an opened graph file already has.
   */
  accuracyLevel?: DecoderBuildOptions["accuracyLevel"];
  /**
   * Let ORT worker threads spin between the ops of a run (default true: faster, burns CPU while waiting). They
   * stop spinning when the run returns (session.force_spinning_stop, see `spinConfig`).
   */
  allowSpinning?: boolean;
  /**
   * ORT's CPU memory arena (default true). The arena keeps every activation buffer it ever grew for the life of
   * the session, so a run does not page-fault fresh buffers: on a 2-core EPYC VM, `bench:engine` (Qwen2.5-0.5B
   * shape, 512-token prefill) went 405 → 436 tok/s without taps, 336 → 385 with the summaries and 266 → 349 with
   * the stacked taps, for 16–30 MiB more peak RSS (793 → 809 MiB with the summaries); an earlier, loaded
   * measurement saw 813–838 → 860–920 MiB. false trades that speed for the memory.
   */
  memArena?: boolean;
  /**
   * ORT's memory patterns (default false). A pattern is planned per set of input shapes and pays off when shapes
   * repeat; a decode step's shapes change on every step (the attention mask grows by one), so each step planned
   * one and used none. Off, on the 2-core EPYC VM (Qwen2.5-0.5B shape, steps interleaved with a pattern-on session,
   * paired medians): 1 row at context 32 → 182 −0.15 to −0.6 ms a step of ~11–15 (the range over both load orders),
   * at 200 → 350 −0.21 of ~12; 4 rows −0.68 of ~21; 8 rows −0.55 of ~34; prefills of changing lengths (120–135,
   * 500–509 tokens) and peak RSS (800-token prompt, ~800 MiB) unchanged within noise.
   */
  memPattern?: boolean;
  /** Extra ORT session config entries ("key": "value"). */
  sessionConfig?: Record<string, string>;
  /**
   * Write ORT's per-node profile (Chrome trace JSON, `<prefix>_<date>.json`) for this session: where a run's time
   * goes, op by op. The file is complete after dispose(). For diagnosis; it slows runs a little.
   */
  profilePrefix?: string;
  /**
   * Longest run handed to ORT at once (default 256). Longer forward() calls run in chunks through the KV
   * cache with identical results, bounding ORT's activations (FFN [T, ffn], attention heads × T × (past+T)):
   * for an 800-token prompt on a 0.5B model, peak RSS 1125 MiB at 1024, 1043 at 512, 988 at 256, 926 at 128,
   * with prefill speed at 256 ≈ 512 and 128 slower (2-core EPYC, loaded machine; MLAS tiles are far smaller).
   */
  maxChunk?: number;
}

export interface DecoderSessionOptions extends OrtRunOptions {
  /** Build the graph with the stacked hidden-state output (default true). */
  taps?: boolean;
  /**
   * With taps: the taps are computed only when a run asks for them, and a run may ask for per-layer token
   * summaries instead (ForwardOptions.summary: what pooling, scoring and fixed probes read). Default true.
   */
  tapSummaries?: boolean;
  /** Graph cache folder (default $ONEPASS_CACHE_DIR/graphs or ~/.cache/onepass/graphs). */
  cacheDir?: string;
  /** Use MatMulNBits for exact 4-bit weights (default true). */
  int4?: boolean;
  /** Hears long work (stage "building graph" when the graph is not cached yet); silent when absent. */
  onProgress?: ProgressCallback;
  /**
   * How accuracyLevel and threads are chosen when not given (engine/tuning.ts): "auto" (default) = this
   * machine's cached calibration if there is one, else from CPU features; "calibrate" = measure once on this
   * machine and cache the result beside the graph; "off" = level 4 and one thread per logical CPU.
   */
  tune?: "auto" | "calibrate" | "off";
}

/** Default longest ORT run (see OrtRunOptions.maxChunk). */
const DEFAULT_MAX_CHUNK = 256;

/** The ONNX model to open: a file path, or model bytes plus the folder its external data files are in. */
export type OnnxModelSource = { path: string } | { bytes: Uint8Array; externalDataDir: string; name: string };

/**
 * The accuracy level and thread count a session for `model` will use on this machine (see `tune`): what the
 * options give, else this machine's calibration (measured now with tune "calibrate" when none is cached), else
 * the CPU's features.
 */
export async function resolveRunSettings(model: LoadedModel, options: DecoderSessionOptions = {}): Promise<RunSettings> {
  const tune = options.tune ?? "auto";
  if (tune !== "auto" && tune !== "calibrate" && tune !== "off") throw new InvalidArgumentError(`tune must be "auto", "calibrate" or "off", got ${String(tune)}`, { field: "tune" });
  if (tune === "off") return { accuracyLevel: options.accuracyLevel === 0 ? 0 : 4, threads: options.threads ?? availableParallelism(), source: "features" };
  const profile = machineProfile();
  const features = settingsFromFeatures(profile);
  const threads = options.threads ?? features.threads;
  if (options.accuracyLevel !== undefined) return { accuracyLevel: options.accuracyLevel === 0 ? 0 : 4, threads, source: "features" };
  // the calibration lives beside the level-4 graph (the one it measures); looking for it builds nothing
  const baseOptions: DecoderBuildOptions = { taps: options.taps ?? true, tapSummaries: options.tapSummaries ?? true, accuracyLevel: 4, int4: options.int4 };
  const cached = cachedCalibration(join(options.cacheDir ?? defaultGraphCacheDir(), graphCacheKey(model, baseOptions)), threads, profile);
  if (cached !== undefined) return cached;
  if (tune === "auto") return { ...features, threads };
  const base = ensureDecoderGraph(model, baseOptions, { cacheDir: options.cacheDir, onProgress: options.onProgress });
  const cfg = { ...spinConfig(options), ...options.sessionConfig };
  const makeSession = (source: string | Uint8Array) =>
    typeof source === "string"
      ? ort.InferenceSession.create(source, ortSessionOptions({ ...options, threads }, cfg))
      : ort.InferenceSession.create(source, ortSessionOptions({ ...options, threads }, { ...cfg, "session.model_external_initializers_file_folder_path": base.dir }));
  return calibrate(base.modelPath, base.dir, model.spec, threads, makeSession, (s, tokens, past) => calibrationFeeds(s, model.spec, tokens, past), profile);
}

/** Feeds of one run of our graph with a zero KV cache of `past` positions (for timing only). */
function calibrationFeeds(session: ort.InferenceSession, spec: ModelSpec, tokens: number[], past: number): { feeds: Record<string, ort.Tensor>; fetches: string[] } {
  const T = tokens.length;
  const { kvHeads, headDim, blocks } = spec;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor("int64", BigInt64Array.from(tokens, BigInt), [1, T]), // [1, T]
    attention_mask: new ort.Tensor("int64", new BigInt64Array(past + T).fill(1n), [1, past + T]), // [1, past+T]
    position_ids: new ort.Tensor("int64", BigInt64Array.from({ length: T }, (_, t) => BigInt(past + t)), [1, T]), // [1, T]
    logits_positions: new ort.Tensor("int64", BigInt64Array.from([BigInt(T - 1)]), [1]), // [1]
  };
  const zeros = new Float32Array(kvHeads * Math.max(past, 1) * headDim); // [1, kvH, past, hd]
  const fetches = ["logits"];
  for (let i = 0; i < blocks; i++) {
    for (const kind of ["key", "value"] as const) {
      feeds[pastName(i, kind)] = new ort.Tensor("float32", zeros.subarray(0, kvHeads * past * headDim), [1, kvHeads, past, headDim]); // [1, kvH, past, hd]
      fetches.push(newKvName(i, kind));
    }
  }
  // the taps are part of a real prefill's cost: with tap summaries, what a live probe prefill fetches
  if (session.inputNames.includes(TAP.hidden)) {
    Object.assign(feeds, tapControlFeeds(spec.blocks + 1, spec.dim, T, false, { max: false }));
    fetches.push(TAP.pooledOut);
  } else if (session.outputNames.includes(HIDDEN_STATES_OUTPUT)) fetches.push(HIDDEN_STATES_OUTPUT);
  return { feeds, fetches };
}

/** Zero [L+1, d, 1] / [L+1, 1, 1] weights (and a [1] read map) for the gate and projection inputs of runs that ask for none (they must be fed all the same). */
const unusedWeights = new Map<string, { weights: ort.Tensor; bias: ort.Tensor; readOf: ort.Tensor }>();

/** The tap-control feeds of a `tapSummaries` graph (graph/decoder.ts TAP) for one run of T tokens. */
function tapControlFeeds(L1: number, d: number, T: number, hidden: boolean, summary: SummaryRequest | undefined): Record<string, ort.Tensor> {
  const flag = (v: boolean) => new ort.Tensor("bool", [v], []); // []
  const key = `${L1}x${d}`;
  let none = unusedWeights.get(key);
  if (none === undefined) {
    none = { weights: new ort.Tensor("float32", new Float32Array(L1 * d), [L1, d, 1]), bias: new ort.Tensor("float32", new Float32Array(L1), [L1, 1, 1]), readOf: new ort.Tensor("int64", new BigInt64Array(1), [1]) };
    unusedWeights.set(key, none);
  }
  const gates = summary?.gates;
  // the attention reads replace the projections in a run that has them (types/summary.ts SummaryAttention)
  const attn = summary?.attention;
  const proj = attn === undefined ? summary?.projections : undefined;
  const A = attn === undefined ? 1 : 2 * attn.heads * attn.headDim;
  return {
    [TAP.attn]: flag(attn !== undefined),
    [TAP.attnWeights]: attn !== undefined ? new ort.Tensor("float32", attn.weights, [L1, d, A]) : none.weights, // [L+1, d, 2·H·hd]
    [TAP.attnBias]: attn !== undefined ? new ort.Tensor("float32", attn.bias, [L1, 1, A]) : none.bias, // [L+1, 1, 2·H·hd]
    [TAP.attnHeads]: new ort.Tensor("int64", BigInt64Array.from([BigInt(attn?.heads ?? 1), BigInt(attn?.headDim ?? 1)]), [2]), // [2]
    [TAP.proj]: flag(proj !== undefined),
    [TAP.projWeights]: proj !== undefined ? new ort.Tensor("float32", proj.weights, [L1, d, proj.width]) : none.weights, // [L+1, d, P]
    [TAP.projBias]: proj !== undefined ? new ort.Tensor("float32", proj.bias, [L1, 1, proj.width]) : none.bias, // [L+1, 1, P]
    [TAP.hidden]: flag(hidden),
    [TAP.pooled]: flag(summary !== undefined && summary.pooled !== false),
    [TAP.max]: flag(summary?.max === true),
    [TAP.gates]: flag(gates !== undefined),
    [TAP.gateWeights]: gates !== undefined ? new ort.Tensor("float32", gates.weights, [L1, d, gates.count + gates.readOf.length]) : none.weights, // [L+1, d, G+K]
    [TAP.gateBias]: gates !== undefined ? new ort.Tensor("float32", gates.bias, [L1, 1, gates.count]) : none.bias, // [L+1, 1, G]
    [TAP.gateReadOf]: gates !== undefined ? new ort.Tensor("int64", BigInt64Array.from(gates.readOf, BigInt), [gates.readOf.length]) : none.readOf, // [K]
    [TAP.stack]: flag(summary !== undefined && stackSummaries(T, d, { max: summary.max === true, mha: attn !== undefined || proj !== undefined })),
  };
}

/** A DecoderSession over onepass's own decoder graph for `model` (built once, cached under `cacheDir`). */
export async function createDecoderSession(model: LoadedModel, sessionOptions: DecoderSessionOptions = {}): Promise<DecoderSession> {
  checkRunOptions(sessionOptions);
  // one level for prefill and decode unless asked otherwise: one ORT session, one copy of the weights
  const settings = await resolveRunSettings(model, sessionOptions);
  const options: DecoderSessionOptions = { ...sessionOptions, accuracyLevel: settings.accuracyLevel, threads: settings.threads };
  const buildOptions: DecoderBuildOptions = { taps: options.taps ?? true, tapSummaries: options.tapSummaries ?? true, accuracyLevel: options.accuracyLevel, int4: options.int4 };
  let graph = ensureDecoderGraph(model, buildOptions, { cacheDir: options.cacheDir, onProgress: options.onProgress });
  try {
    return await openOnnxDecoderSession({ path: graph.modelPath }, model.spec, options);
  } catch (first) {
    if (!graph.hit || !(first instanceof GraphError)) throw first;
    // a cached entry that passed validation but does not load: rebuild it once
    graph = ensureDecoderGraph(model, buildOptions, { cacheDir: options.cacheDir, rebuild: true, onProgress: options.onProgress });
    return await openOnnxDecoderSession({ path: graph.modelPath }, model.spec, options);
  }
}

function checkRunOptions(options: OrtRunOptions): void {
  const maxChunk = options.maxChunk ?? DEFAULT_MAX_CHUNK;
  if (!Number.isInteger(maxChunk) || maxChunk < 1) throw new InvalidArgumentError(`maxChunk must be a positive integer, got ${maxChunk}`, { field: "maxChunk" });
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new InvalidArgumentError(`threads must be a positive integer, got ${threads}`, { field: "threads" });
}

/**
 * A DecoderSession over an already-built decoder graph (ours, or an export tapped by graph/surgery.ts). Its
 * inputs and outputs are introspected; `spec` gives layers, KV heads, head size, vocabulary and context.
 */
export async function openOnnxDecoderSession(source: OnnxModelSource, spec: ModelSpec, options: OrtRunOptions = {}): Promise<DecoderSession> {
  checkRunOptions(options);
  const file = "path" in source ? source.path : source.name;
  const config: Record<string, string> = { ...spinConfig(options), ...options.sessionConfig };
  const sessionOptions = (cfg: Record<string, string>) => ortSessionOptions(options, cfg);
  // From memory, ORT resolves external-data locations against this folder.
  const memoryConfig = (dir: string) => ({ ...config, "session.model_external_initializers_file_folder_path": dir });
  let session: ort.InferenceSession;
  try {
    session = "path" in source
      ? await ort.InferenceSession.create(source.path, sessionOptions(config))
      : await ort.InferenceSession.create(source.bytes, sessionOptions(memoryConfig(source.externalDataDir)));
  } catch (e) {
    throw new GraphError(`ONNX Runtime cannot load the decoder: ${(e as Error).message}`, { file }, { cause: e });
  }
  let io: DecoderIo;
  try {
    io = inspectIo(session, spec, file);
  } catch (e) {
    await session.release();
    throw e;
  }
  // multi-token runs may want another MatMulNBits accuracy level: same weights file, patched node attributes
  let prefillSession = session;
  const decodeLevel = options.accuracyLevel ?? 4;
  const prefillLevel = options.prefillAccuracyLevel ?? decodeLevel;
  const patched = "path" in source && prefillLevel !== decodeLevel ? withMatMulNBitsAccuracy(source.path, prefillLevel) : undefined;
  if (patched !== undefined && "path" in source) {
    try {
      prefillSession = await ort.InferenceSession.create(patched, sessionOptions(memoryConfig(dirname(source.path))));
    } catch (e) {
      await session.release();
      throw new GraphError(`ONNX Runtime cannot load the prefill decoder: ${(e as Error).message}`, { file }, { cause: e });
    }
  }
  return new OrtDecoderSession(spec, session, prefillSession, io, file, options.maxChunk ?? DEFAULT_MAX_CHUNK, options.profilePrefix !== undefined);
}

/** How the graph keeps its KV cache (see the file comment). */
type KvMode = "append" | "present" | "recompute";

/** Which optional inputs the graph has and how it keeps its KV cache. */
interface DecoderIo {
  mask: boolean;
  positionIds: boolean;
  logitsPositions: boolean;
  kv: KvMode;
  /** KV-cache element type ("append" is always float32). */
  pastType: "float32" | "float16";
  taps: boolean;
  /** The graph has the run-time tap controls and summary outputs (graph/decoder.ts TAP): they must be fed. */
  summaries: boolean;
  /** input_ids has a free batch dimension and the KV cache is "append": sequences can decode together. */
  batched: boolean;
}

const KNOWN_INPUTS = new Set(["input_ids", "attention_mask", "position_ids", "logits_positions"]);
const TAP_INPUTS: readonly string[] = [TAP.hidden, TAP.pooled, TAP.max, TAP.gates, TAP.gateWeights, TAP.gateBias, TAP.gateReadOf, TAP.proj, TAP.projWeights, TAP.projBias, TAP.attn, TAP.attnWeights, TAP.attnBias, TAP.attnHeads, TAP.stack];
const TAP_OUTPUTS: readonly string[] = [HIDDEN_STATES_OUTPUT, TAP.pooledOut, TAP.maxOut, TAP.gateReadsOut, TAP.gateDenOut, TAP.projOut, TAP.attnOut];

function inspectIo(session: ort.InferenceSession, spec: ModelSpec, file: string): DecoderIo {
  const inputs = new Map(session.inputMetadata.map((m) => [m.name, m]));
  const outputs = new Set(session.outputNames);
  if (!inputs.has("input_ids")) throw new GraphError(`the model has no input_ids input`, { file, field: "input_ids" });
  if (!outputs.has("logits")) throw new GraphError(`the model has no logits output`, { file, field: "logits" });
  for (const name of inputs.keys()) {
    if (!KNOWN_INPUTS.has(name) && !TAP_INPUTS.includes(name) && !/^past_key_values\.\d+\.(key|value)$/.test(name)) {
      throw new GraphError(`the model has an input onepass does not know how to feed`, { file, field: name });
    }
  }
  let kv: KvMode = "recompute";
  let pastType: DecoderIo["pastType"] = "float32";
  const pastKey = inputs.get(pastName(0, "key"));
  if (pastKey !== undefined) {
    if (!pastKey.isTensor || (pastKey.type !== "float32" && pastKey.type !== "float16")) {
      throw new GraphError(`KV cache input must be float32 or float16`, { file, field: pastKey.name });
    }
    pastType = pastKey.type;
    const appendable = pastType === "float32" && outputs.has(newKvName(0, "key"));
    kv = appendable ? "append" : "present";
    for (let i = 0; i < spec.blocks; i++) {
      for (const kind of ["key", "value"] as const) {
        if (!inputs.has(pastName(i, kind))) throw new GraphError(`KV cache input missing (config has ${spec.blocks} blocks)`, { file, field: pastName(i, kind) });
        const out = kv === "append" ? newKvName(i, kind) : presentName(i, kind);
        if (!outputs.has(out)) throw new GraphError(`KV cache output missing`, { file, field: out });
      }
    }
    if (inputs.has(pastName(spec.blocks, "key"))) {
      throw new GraphError(`the model has more KV cache inputs than the ${spec.blocks} blocks of its config`, { file, field: pastName(spec.blocks, "key") });
    }
  }
  return {
    mask: inputs.has("attention_mask"),
    positionIds: inputs.has("position_ids"),
    logitsPositions: inputs.has("logits_positions"),
    kv,
    pastType,
    taps: outputs.has(HIDDEN_STATES_OUTPUT),
    summaries: tapControls(inputs, outputs, file),
    batched: kv === "append" && freeBatch(inputs.get("input_ids")!) && inputs.has("attention_mask") && inputs.has("position_ids"),
  };
}

/** Whether the graph has all the tap controls and outputs (a part of them is a broken graph, not a choice). */
function tapControls(inputs: Map<string, unknown>, outputs: Set<string>, file: string): boolean {
  const have = TAP_INPUTS.filter((n) => inputs.has(n));
  if (have.length === 0) return false;
  const missing = [...TAP_INPUTS.filter((n) => !inputs.has(n)), ...TAP_OUTPUTS.filter((n) => !outputs.has(n))];
  if (missing.length > 0) throw new GraphError(`the model has tap-control inputs but lacks ${missing.join(", ")}`, { file, field: missing[0] });
  return true;
}

/**
 * Worker threads spin between the ops of a run, and stop when the run returns. Left spinning, ORT's workers
 * go on polling for work for milliseconds after each run (up to 2^20 pause loops each), on the cores the next JS work
 * needs: the compiled probes' own session right after a prefill, the sampler, the server. Two interleaved A/B
 * runs on the random Qwen2.5-0.5B shape (128-token prefill, 2-core EPYC at load 8–10, 9 rounds, medians;
 * spinning on after the run → stopped): the MHA probe set 73.5 → 55.9 and 114.0 → 96.6 ms, pooling 20.8 → 7.5
 * and 13.7 → 13.2 ms, decode 69/73 → 62/75 and 90/84 → 86/80 ms/token (no loss). sessionConfig overrides it.
 */
function spinConfig(options: OrtRunOptions): Record<string, string> {
  return { "session.intra_op.allow_spinning": options.allowSpinning === false ? "0" : "1", "session.force_spinning_stop": "1" };
}

/** ORT session options for a decoder session. */
function ortSessionOptions(options: OrtRunOptions, cfg: Record<string, string>): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: options.executionProviders ?? ["cpu"],
    intraOpNumThreads: options.threads ?? availableParallelism(),
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    executionMode: "sequential",
    enableCpuMemArena: options.memArena !== false,
    enableMemPattern: options.memPattern === true,
    ...(options.profilePrefix !== undefined ? { enableProfiling: true, profileFilePrefix: options.profilePrefix } : {}),
    extra: nestConfig(cfg),
  };
}

/** Whether a tensor input's first dimension is symbolic (a batch of any size). */
function freeBatch(m: ort.InferenceSession.ValueMetadata): boolean {
  return m.isTensor && typeof m.shape[0] === "string";
}

/** ORT's `extra` takes nested objects for dotted config keys: {"a.b": "1"} → {a: {b: "1"}}. */
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

/** A KV-cache tensor [1, kvH, n, hd] of the graph's type over `data` (float16 as raw bits). */
function kvTensor(data: Float32Array | Uint16Array, kvHeads: number, n: number, headDim: number): ort.Tensor {
  return data instanceof Float32Array
    ? new ort.Tensor("float32", data, [1, kvHeads, n, headDim]) // [1, kvH, n, hd]
    : new ort.Tensor("float16", data, [1, kvHeads, n, headDim]); // [1, kvH, n, hd]
}

class OrtDecoderSession implements DecoderSession {
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly hasTaps: boolean;
  readonly hasTapSummaries: boolean;
  readonly batch?: BatchDecoder;
  /**
   * "append" KV cache (kv-pool.ts): per layer one key and one value buffer [slots, kvH, capacity, hd] owned by JS
   * and fed (without a copy) as past_key_values. Each run fetches just its own rows (new_key_values,
   * [B, kvH, T, hd]) and appends them here, so the copy out of ORT per decode step is a few KiB rather than the
   * whole cache. `main` is the sequence of forward()/reset()/truncate(); `batch` opens more.
   */
  private pool?: KvPool;
  private main?: KvSequence;
  /** "present" KV cache: the previous run's present.* tensors, in the graph's dtype. */
  private past: { key: ort.Tensor; value: ort.Tensor }[] = []; // each [1, kvH, pastLength, hd]
  /** "recompute": the tokens so far, re-run by every forward. */
  private history: number[] = [];
  private length = 0;
  private disposed = false;
  /** A run is in flight: the KV cache must not be touched by a second forward/reset/truncate meanwhile. */
  private busy = false;

  /**
   * @param session runs of one token (decode)
   * @param prefillSession runs of several tokens (may be `session` itself)
   */
  constructor(
    private readonly spec: ModelSpec,
    private readonly session: ort.InferenceSession,
    private readonly prefillSession: ort.InferenceSession,
    private readonly io: DecoderIo,
    private readonly file: string,
    /** Longest run given to ORT at once; longer forward() calls are split (see forward). */
    private readonly maxChunk: number,
    /** ORT profiling is on (ended at dispose). */
    private readonly profiling = false,
  ) {
    this.vocabSize = spec.vocabSize;
    this.contextLength = spec.contextLength;
    this.hasTaps = io.taps;
    this.hasTapSummaries = io.summaries;
    if (io.kv === "append") {
      this.pool = new KvPool(spec.blocks, spec.kvHeads, spec.headDim, spec.contextLength);
      this.main = this.pool.openSequence();
    }
    if (io.batched) this.batch = this.batchDecoder();
    this.setLength(0);
  }

  get pastLength(): number {
    return this.main?.length ?? this.length;
  }

  reset(): void {
    this.assertIdle("reset");
    this.setLength(0);
  }

  truncate(n: number): void {
    this.assertIdle("truncate");
    if (!Number.isInteger(n) || n < 0 || n > this.pastLength) {
      throw new InvalidArgumentError(`truncate(${n}) outside [0, ${this.pastLength}]`, { field: "n" });
    }
    this.setLength(n);
  }

  /** Keeps the first n ≤ length cached positions. */
  private setLength(n: number): void {
    if (this.io.kv === "present") {
      const { kvHeads, headDim, blocks } = this.spec;
      if (n === 0) {
        const empty = () => kvTensor(this.io.pastType === "float32" ? new Float32Array(0) : new Uint16Array(0), kvHeads, 0, headDim); // [1, kvH, 0, hd]
        this.past = Array.from({ length: blocks }, () => ({ key: empty(), value: empty() }));
      } else if (n < this.length) {
        const len = this.length;
        const cut = (t: ort.Tensor): ort.Tensor => {
          const src = t.data as Float32Array | Uint16Array; // [1, kvH, len, hd]
          const dst = src instanceof Float32Array ? new Float32Array(kvHeads * n * headDim) : new Uint16Array(kvHeads * n * headDim); // [1, kvH, n, hd]
          for (let h = 0; h < kvHeads; h++) dst.set(src.subarray(h * len * headDim, (h * len + n) * headDim), h * n * headDim);
          return kvTensor(dst, kvHeads, n, headDim);
        };
        this.past = this.past.map((p) => ({ key: cut(p.key), value: cut(p.value) }));
      }
    }
    this.history.length = Math.min(this.history.length, n);
    this.length = n;
    if (this.main !== undefined) {
      this.main.length = n; // "append": later positions are overwritten by the next forward
      if (n === 0) this.pool!.trim(); // a long single-sequence run must not pin the pool's capacity
    }
  }

  private assertIdle(what: string): void {
    if (this.busy) throw new InvalidArgumentError(`${what}() while a forward() of this session is still running`, { field: "session" });
  }

  async forward(tokens: readonly number[], options: ForwardOptions = {}): Promise<ForwardPass> {
    return this.forwardOn(this.main, tokens, options);
  }

  /** forward() for `seq` of the KV pool ("append"), or for the session's one sequence (seq undefined). */
  private async forwardOn(seq: KvSequence | undefined, tokens: readonly number[], options: ForwardOptions): Promise<ForwardPass> {
    if (this.disposed) throw new InvalidArgumentError("forward() on a disposed session", { field: "session" });
    this.assertIdle("forward");
    if (seq?.closed === true) throw new InvalidArgumentError("forward() on a closed sequence", { field: "sequence" });
    const T = tokens.length;
    const past = seq?.length ?? this.length;
    if (T === 0) throw new InvalidArgumentError("forward() needs at least one token", { field: "tokens" });
    if (past + T > this.contextLength) {
      throw new ContextOverflowError(`${past} cached + ${T} new tokens exceed the context of ${this.contextLength}`, { file: this.file, field: "context_length" });
    }
    if (options.hidden === true && !this.hasTaps) {
      throw new InvalidArgumentError("hidden states requested from a session built without taps", { field: "taps" });
    }
    if (options.summary !== undefined) checkSummaryRequest(options.summary, this.hasTapSummaries, this.spec);
    for (let t = 0; t < T; t++) {
      const id = tokens[t];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new InvalidArgumentError(`token id ${id} outside [0, ${this.vocabSize})`, { field: "tokens", offset: t });
      }
    }
    this.busy = true;
    try {
      // recompute mode re-runs everything anyway: chunking would only multiply the work
      // a summary of the first `upTo` tokens only: the run is split there (results as if from one run)
      const cut = options.summary?.upTo !== undefined && options.summary.upTo < T;
      return (T <= this.maxChunk && !cut) || this.io.kv === "recompute" ? await this.run(tokens, options, seq) : await this.runChunked(tokens, options, seq);
    } finally {
      this.busy = false;
    }
  }

  private async runChunked(tokens: readonly number[], options: ForwardOptions, seq: KvSequence | undefined): Promise<ForwardPass> {
    const T = tokens.length;
    // Long prompts run in chunks through the KV cache: ORT's attention scratch grows with T × (past+T) per
    // head, so one 8k-token run would need GiBs. Results are assembled as if from one run.
    const start = seq?.length ?? this.length;
    const { blocks, dim } = this.spec;
    const wantHidden = options.hidden === true;
    const all = options.logits === "all";
    const hidden = wantHidden ? new Float32Array((blocks + 1) * T * dim) : undefined; // [L+1, T, d]
    const logits = all ? new Float32Array(T * this.vocabSize) : undefined; // [T, vocab]
    let last: ForwardPass | undefined;
    let summary: TapSummary | undefined;
    let runMs = 0;
    try {
      const upTo = Math.min(T, options.summary?.upTo ?? T);
      for (let off = 0; off < T; ) {
        // chunks of maxChunk, one of them ending at the summary's cut
        const end = Math.min(T, off + this.maxChunk, off < upTo ? upTo : T);
        const chunk = tokens.slice(off, end);
        // attention reads need every summarised token in one run: the first chunk, when it ends at the cut
        const summarised = options.summary !== undefined && end <= upTo ? { summary: upTo <= this.maxChunk ? options.summary : acrossRuns(options.summary) } : {};
        last = await this.run(chunk, { hidden: wantHidden, logits: all ? "all" : "last", ...summarised }, seq);
        if (hidden !== undefined) {
          for (let l = 0; l <= blocks; l++) hidden.set(last.hidden!.layer(l), (l * T + off) * dim);
        }
        logits?.set(last.logits, off * this.vocabSize);
        off = end;
        runMs += last.runMs;
        // partial aggregates of consecutive chunks combine exactly (types/summary.ts)
        if (last.summary !== undefined) summary = summary === undefined ? last.summary : summary.then(last.summary);
      }
    } catch (e) {
      // the cache holds none of this call's tokens
      if (seq !== undefined && seq !== this.main) seq.length = start;
      else this.setLength(start);
      throw e;
    }
    return {
      logits: logits ?? last!.logits,
      positions: all ? T : 1,
      hidden: hidden !== undefined ? new HiddenStates(blocks + 1, T, dim, hidden) : undefined,
      ...(summary !== undefined ? { summary } : {}),
      runMs,
    };
  }

  /** One ORT run over tokens already validated by forward(), for `seq` ("append") or the session's sequence. */
  private async run(tokens: readonly number[], options: ForwardOptions, seq: KvSequence | undefined): Promise<ForwardPass> {
    const T = tokens.length;
    const io = this.io;
    const pastLen = seq?.length ?? this.length;
    // With a KV cache the run covers only the new tokens; without one, the whole sequence again.
    const recompute = io.kv === "recompute";
    const R = recompute ? pastLen + T : T; // tokens in this run
    const start = recompute ? 0 : pastLen; // position of the run's first token
    const ids = new BigInt64Array(R); // [1, R]
    if (recompute) for (let t = 0; t < pastLen; t++) ids[t] = BigInt(this.history[t]);
    for (let t = 0; t < T; t++) ids[R - T + t] = BigInt(tokens[t]);
    const all = options.logits === "all";
    const wanted = all ? T : 1; // rows of logits returned
    const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor("int64", ids, [1, R]) };
    if (io.mask) feeds.attention_mask = new ort.Tensor("int64", new BigInt64Array(start + R).fill(1n), [1, start + R]); // [1, past+R]
    if (io.positionIds) feeds.position_ids = new ort.Tensor("int64", BigInt64Array.from({ length: R }, (_, t) => BigInt(start + t)), [1, R]); // [1, R]
    if (io.logitsPositions) {
      feeds.logits_positions = new ort.Tensor("int64", BigInt64Array.from({ length: wanted }, (_, i) => BigInt(R - wanted + i)), [wanted]); // [P]
    }
    const { kvHeads, headDim, blocks, dim } = this.spec;
    const fetches: string[] = ["logits"];
    if (io.kv === "append") {
      const pool = this.pool!;
      pool.ensureCapacity(pastLen + T);
      for (let i = 0; i < blocks; i++) {
        for (const kind of ["key", "value"] as const) {
          feeds[pastName(i, kind)] = new ort.Tensor("float32", pool.view(i, kind, seq!.slot, 1), [1, kvHeads, pool.capacity, headDim]); // [1, kvH, capacity, hd]
          fetches.push(newKvName(i, kind));
        }
      }
    } else if (io.kv === "present") {
      for (let i = 0; i < this.past.length; i++) {
        feeds[pastName(i, "key")] = this.past[i].key;
        feeds[pastName(i, "value")] = this.past[i].value;
        fetches.push(presentName(i, "key"), presentName(i, "value"));
      }
    }
    const wantHidden = options.hidden === true;
    if (wantHidden) fetches.push(HIDDEN_STATES_OUTPUT);
    // summaries cover the run's tokens: our graphs (the only ones with them) keep a KV cache, so R = T
    const summary = io.summaries && R === T ? options.summary : undefined;
    if (io.summaries) Object.assign(feeds, tapControlFeeds(blocks + 1, dim, T, wantHidden, summary));
    if (summary !== undefined) fetches.push(...summaryFetches(summary));

    const t0 = performance.now();
    const out = await this.ortRun(T > 1 ? this.prefillSession : this.session, feeds, fetches);
    const runMs = performance.now() - t0;

    // logits [1, rows, V]: the last `wanted` rows, as float32 (no copy when they are all there is)
    const V = this.vocabSize;
    const logitsTensor = out.logits;
    const rows = logitsTensor.dims[1];
    if (logitsTensor.dims.length !== 3 || logitsTensor.dims[2] !== V || rows < wanted) {
      throw new GraphError(`logits have shape [${logitsTensor.dims}], expected [1, ≥${wanted}, ${V}]`, { file: this.file, field: "logits" });
    }
    const logits = toFloat32(logitsTensor, (rows - wanted) * V, rows * V, this.file); // [wanted, V]
    let hidden: HiddenStates | undefined;
    if (wantHidden) {
      const h = this.checkHidden(out[HIDDEN_STATES_OUTPUT], 1, R); // [L+1, 1, R, d]
      // [L+1, 1, R, d] squeezed to [L+1, R, d]: same buffer, no copy
      const whole = new HiddenStates(blocks + 1, R, dim, h.data as Float32Array);
      hidden = R === T ? whole : whole.sliceTokens(R - T, R);
    }

    if (io.kv === "append") {
      for (let i = 0; i < blocks; i++) {
        for (const kind of ["key", "value"] as const) this.pool!.append(i, kind, seq!, out[newKvName(i, kind)].data as Float32Array, 0, T);
      }
      seq!.length += T;
      if (seq === this.main) this.length = seq!.length;
    } else {
      if (io.kv === "present") {
        for (let i = 0; i < this.past.length; i++) this.past[i] = { key: out[presentName(i, "key")], value: out[presentName(i, "value")] };
      } else {
        this.history.push(...tokens);
      }
      this.length += T;
    }
    const result: ForwardPass = { logits, positions: wanted, runMs };
    if (hidden !== undefined) result.hidden = hidden;
    if (summary !== undefined) result.summary = readSummary(out, summary, 0, T, blocks + 1, dim, this.file);
    return result;
  }

  private async ortRun(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, fetches: string[]): Promise<ort.InferenceSession.ReturnType> {
    try {
      return await session.run(feeds, fetches);
    } catch (e) {
      throw new GraphError(`ONNX Runtime run failed: ${(e as Error).message}`, { file: this.file, field: "forward" }, { cause: e });
    }
  }

  /** Checks the stacked hidden states [L+1, B, R, d] float32 of a run. */
  private checkHidden(h: ort.Tensor, B: number, R: number): ort.Tensor {
    const { blocks, dim } = this.spec;
    if (h.type !== "float32" || h.dims.length !== 4 || h.dims[0] !== blocks + 1 || h.dims[1] !== B || h.dims[2] !== R || h.dims[3] !== dim) {
      throw new GraphError(`hidden_states have shape [${h.dims}] (${h.type}), expected [${blocks + 1}, ${B}, ${R}, ${dim}] float32`, { file: this.file, field: HIDDEN_STATES_OUTPUT });
    }
    return h;
  }

  /** The BatchDecoder over this session's KV pool (graphs with a batch dimension and an "append" cache). */
  private batchDecoder(): BatchDecoder {
    const own = (seq: SequenceHandle): KvSequence => {
      if (!(seq instanceof KvSequence) || seq === this.main) throw new InvalidArgumentError("not a sequence of this session's batch decoder", { field: "sequence" });
      return seq;
    };
    return {
      openSequence: () => {
        if (this.disposed) throw new InvalidArgumentError("openSequence() on a disposed session", { field: "session" });
        return this.pool!.openSequence();
      },
      closeSequence: (seq) => {
        this.assertIdle("closeSequence");
        this.pool!.closeSequence(own(seq));
      },
      forwardSequence: (seq, tokens, options = {}) => this.forwardOn(own(seq), tokens, options),
      decodeStep: (seqs, tokens, options = {}) => this.decodeStep(seqs.map(own), tokens, options.hidden === true),
    };
  }

  /**
   * One decode step of several sequences in one ORT run: input_ids [B, 1], attention_mask [B, maxPast + 1] (row
   * b: its p_b past positions and the new one), position_ids [B, 1] = p_b, past views [B, kvH, capacity, hd] of
   * the pool's first B slots (the sequences are gathered there first).
   */
  private async decodeStep(seqs: KvSequence[], tokens: readonly number[], wantHidden: boolean): Promise<ForwardPass[]> {
    if (this.disposed) throw new InvalidArgumentError("decodeStep() on a disposed session", { field: "session" });
    this.assertIdle("decodeStep");
    const B = seqs.length;
    if (B === 0 || tokens.length !== B) throw new InvalidArgumentError(`decodeStep() needs one token per sequence (${B} sequences, ${tokens.length} tokens)`, { field: "tokens" });
    if (new Set(seqs).size !== B) throw new InvalidArgumentError("decodeStep() got the same sequence twice", { field: "sequences" });
    if (wantHidden && !this.hasTaps) throw new InvalidArgumentError("hidden states requested from a session built without taps", { field: "taps" });
    tokens.forEach((id, b) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new InvalidArgumentError(`token id ${id} outside [0, ${this.vocabSize})`, { field: "tokens", offset: b });
      if (seqs[b].closed) throw new InvalidArgumentError("decodeStep() on a closed sequence", { field: "sequences", offset: b });
      if (seqs[b].length + 1 > this.contextLength) {
        throw new ContextOverflowError(`${seqs[b].length} cached + 1 new token exceed the context of ${this.contextLength}`, { file: this.file, field: "context_length" });
      }
    });
    this.busy = true;
    try {
      const pool = this.pool!;
      const { kvHeads, headDim, blocks, dim } = this.spec;
      const maxPast = Math.max(...seqs.map((q) => q.length));
      pool.ensureCapacity(maxPast + 1);
      pool.gather(seqs);
      const S = maxPast + 1;
      const mask = new BigInt64Array(B * S); // [B, maxPast + 1]
      seqs.forEach((q, b) => {
        mask.fill(1n, b * S, b * S + q.length);
        mask[b * S + maxPast] = 1n;
      });
      const feeds: Record<string, ort.Tensor> = {
        input_ids: new ort.Tensor("int64", BigInt64Array.from(tokens, (t) => BigInt(t)), [B, 1]), // [B, 1]
        attention_mask: new ort.Tensor("int64", mask, [B, S]), // [B, maxPast + 1]
        position_ids: new ort.Tensor("int64", BigInt64Array.from(seqs, (q) => BigInt(q.length)), [B, 1]), // [B, 1]
      };
      if (this.io.summaries) Object.assign(feeds, tapControlFeeds(blocks + 1, dim, 1, wantHidden, undefined));
      if (this.io.logitsPositions) feeds.logits_positions = new ort.Tensor("int64", new BigInt64Array([0n]), [1]); // [1]
      const fetches = ["logits"];
      for (let i = 0; i < blocks; i++) {
        for (const kind of ["key", "value"] as const) {
          feeds[pastName(i, kind)] = new ort.Tensor("float32", pool.view(i, kind, 0, B), [B, kvHeads, pool.capacity, headDim]); // [B, kvH, capacity, hd]
          fetches.push(newKvName(i, kind));
        }
      }
      if (wantHidden) fetches.push(HIDDEN_STATES_OUTPUT);
      const t0 = performance.now();
      const out = await this.ortRun(this.session, feeds, fetches);
      const runMs = performance.now() - t0;
      const V = this.vocabSize;
      const lt = out.logits;
      if (lt.dims.length !== 3 || lt.dims[0] !== B || lt.dims[1] !== 1 || lt.dims[2] !== V) {
        throw new GraphError(`logits have shape [${lt.dims}], expected [${B}, 1, ${V}]`, { file: this.file, field: "logits" });
      }
      const logits = toFloat32(lt, 0, B * V, this.file); // [B, V]
      const h = wantHidden ? (this.checkHidden(out[HIDDEN_STATES_OUTPUT], B, 1).data as Float32Array) : undefined; // [L+1, B, 1, d]
      for (let i = 0; i < blocks; i++) {
        for (const kind of ["key", "value"] as const) {
          const rows = out[newKvName(i, kind)].data as Float32Array; // [B, kvH, 1, hd]
          seqs.forEach((q, b) => pool.append(i, kind, q, rows, b, 1));
        }
      }
      return seqs.map((q, b) => {
        q.length += 1;
        const pass: ForwardPass = { logits: logits.subarray(b * V, (b + 1) * V), positions: 1, runMs };
        if (h !== undefined) {
          // [L+1, 1, d]: this sequence's rows of [L+1, B, 1, d] (one sequence: they are all of it, no copy)
          let own = h;
          if (B > 1) {
            own = new Float32Array((blocks + 1) * dim);
            for (let l = 0; l <= blocks; l++) own.set(h.subarray((l * B + b) * dim, (l * B + b + 1) * dim), l * dim);
          }
          pass.hidden = new HiddenStates(blocks + 1, 1, dim, own);
        }
        return pass;
      });
    } finally {
      this.busy = false;
    }
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.pool?.clear();
    this.past = [];
    if (this.profiling) {
      this.session.endProfiling();
      if (this.prefillSession !== this.session) this.prefillSession.endProfiling();
    }
    await this.session.release();
    if (this.prefillSession !== this.session) await this.prefillSession.release();
  }
}

/** Refuses a summary request the session cannot serve or whose gates do not fit the model. */
function checkSummaryRequest(r: SummaryRequest, supported: boolean, spec: ModelSpec): void {
  if (!supported) throw new InvalidArgumentError("tap summaries requested from a session whose graph has none (built without tapSummaries, or not onepass's own graph)", { field: "summary" });
  if (r.upTo !== undefined && !(Number.isInteger(r.upTo) && r.upTo >= 1)) throw new InvalidArgumentError(`summary.upTo must be an integer ≥ 1, got ${r.upTo}`, { field: "summary.upTo" });
  const L1 = spec.blocks + 1;
  const p = r.projections;
  if (p !== undefined && (!Number.isInteger(p.width) || p.width < 1 || p.weights.length !== L1 * spec.dim * p.width || p.bias.length !== L1 * p.width)) {
    throw new InvalidArgumentError(`summary projections must be [${L1}, ${spec.dim}, P] weights and [${L1}, P] biases with P ≥ 1 (got ${p.weights.length} and ${p.bias.length} values for P = ${p.width})`, { field: "summary.projections" });
  }
  const a = r.attention;
  if (a !== undefined) {
    const A = 2 * a.heads * a.headDim;
    if (!Number.isInteger(a.heads) || a.heads < 1 || !Number.isInteger(a.headDim) || a.headDim < 1 || a.weights.length !== L1 * spec.dim * A || a.bias.length !== L1 * A) {
      throw new InvalidArgumentError(`summary attention must be [${L1}, ${spec.dim}, 2·H·hd] weights and [${L1}, 2·H·hd] biases with H, hd ≥ 1 (got ${a.weights.length} and ${a.bias.length} values for H = ${a.heads}, hd = ${a.headDim})`, { field: "summary.attention" });
    }
    if (p === undefined) throw new InvalidArgumentError("summary attention needs the projections too (what a prompt summarised over several runs reads)", { field: "summary.projections" });
  }
  const g = r.gates;
  if (g === undefined) return;
  const K = g.readOf?.length ?? 0;
  if (!Number.isInteger(g.count) || g.count < 1 || K < 1 || g.weights.length !== L1 * spec.dim * (g.count + K) || g.bias.length !== L1 * g.count) {
    throw new InvalidArgumentError(`summary gates must be [${L1}, ${spec.dim}, G+K] weights and [${L1}, G] biases with G, K ≥ 1 (got ${g.weights.length} and ${g.bias.length} values for G = ${g.count}, K = ${K})`, { field: "summary.gates" });
  }
  const bad = g.readOf.findIndex((v) => !Number.isInteger(v) || v < 0 || v >= g.count);
  if (bad >= 0) throw new InvalidArgumentError(`summary gates: read ${bad} names gate ${g.readOf[bad]}, outside 0..${g.count - 1}`, { field: "summary.gates.readOf" });
}

/** The outputs a summary request fetches. */
function summaryFetches(r: SummaryRequest): string[] {
  return [...(r.pooled !== false ? [TAP.pooledOut] : []), ...(r.max === true ? [TAP.maxOut] : []), ...(r.gates !== undefined ? [TAP.gateReadsOut, TAP.gateDenOut] : []), ...(r.attention !== undefined ? [TAP.attnOut] : r.projections !== undefined ? [TAP.projOut] : [])];
}

/** Row b's TapSummary from a run's summary outputs (`tokens` real tokens in that row). */
function readSummary(out: ort.InferenceSession.ReturnType, r: SummaryRequest, b: number, tokens: number, L1: number, d: number, file: string): TapSummary {
  const check = (name: string, dims: number[]) => {
    const t = out[name];
    if (t.type !== "float32" || t.dims.length !== dims.length + 1 || t.dims.slice(1).some((v, i) => v !== dims[i])) {
      throw new GraphError(`${name} has shape [${t.dims}] (${t.type}), expected [B, ${dims.join(", ")}] float32`, { file, field: name });
    }
    const n = dims.reduce((a, v) => a * v, 1);
    return (t.data as Float32Array).subarray(b * n, (b + 1) * n);
  };
  /** Row b of a layer-major output [L+1, B, n…] as [L+1, n] (no copy for one row). */
  const layerMajorRow = (name: string, n: number): Float32Array => {
    const t = out[name];
    const size = t.dims.slice(2).reduce((a, v) => a * v, 1);
    if (t.type !== "float32" || t.dims[0] !== L1 || size !== n || b >= t.dims[1]) {
      throw new GraphError(`${name} has shape [${t.dims}] (${t.type}), expected [${L1}, B, …] float32 with ${n} values a row`, { file, field: name });
    }
    const all = t.data as Float32Array, B = t.dims[1];
    if (B === 1) return all;
    const row = new Float32Array(L1 * n);
    for (let l = 0; l < L1; l++) row.set(all.subarray((l * B + b) * n, (l * B + b + 1) * n), l * n);
    return row;
  };
  let sum: Float64Array | undefined, last: Float64Array | undefined;
  if (r.pooled !== false) {
    const pooled = check(TAP.pooledOut, [L1, 2, d]); // [L+1, 2, d]: sum, last
    sum = new Float64Array(L1 * d); // [L+1, d]
    last = new Float64Array(L1 * d); // [L+1, d]
    for (let l = 0; l < L1; l++) {
      sum.set(pooled.subarray(2 * l * d, (2 * l + 1) * d), l * d);
      last.set(pooled.subarray((2 * l + 1) * d, (2 * l + 2) * d), l * d);
    }
  }
  const max = r.max === true ? Float64Array.from(check(TAP.maxOut, [L1, d])) : undefined; // [L+1, d]
  const G = r.gates?.count ?? 0;
  const gateReads = G > 0 ? Float64Array.from(check(TAP.gateReadsOut, [L1, r.gates!.readOf.length])) : undefined; // [L+1, K]
  const gateDen = G > 0 ? Float64Array.from(check(TAP.gateDenOut, [L1, G])) : undefined; // [L+1, G]
  const H = r.attention?.heads ?? 0;
  const attn = H > 0 ? layerMajorRow(TAP.attnOut, H * d) : undefined; // [L+1, H, d]
  const P = H > 0 ? 0 : (r.projections?.width ?? 0);
  const proj = P > 0 ? layerMajorRow(TAP.projOut, tokens * P) : undefined; // [L+1, T, P]
  return new TapSummary(L1, d, tokens, sum, last, max, G, gateReads, gateDen, proj, P, attn, H);
}

/** Elements [from, to) of a float32 or float16 tensor as float32 (a view when it is all of a float32 tensor). */
function toFloat32(t: ort.Tensor, from: number, to: number, file: string): Float32Array {
  if (t.type === "float32") {
    const data = t.data as Float32Array;
    return from === 0 && to === data.length ? data : data.slice(from, to);
  }
  if (t.type === "float16") {
    const src = t.data as Uint16Array; // [n]: f16 bits
    return decodeF16(src.subarray(from, to)); // [to - from]
  }
  throw new GraphError(`logits have type ${t.type}, expected float32 or float16`, { file, field: "logits" });
}
