/**
 * DecoderSession over ONNX Runtime: the decoder graph from graph/ (built once, cached on disk), a KV cache
 * held as ORT tensors between runs, and hidden states from the same run() that produces the logits.
 */
import { availableParallelism } from "node:os";
import * as ort from "onnxruntime-node";
import { ContextOverflowError, GraphError, InvalidArgumentError } from "../errors.js";
import type { LoadedModel } from "../model/spec.js";
import { ensureDecoderGraph } from "../graph/cache.js";
import { pastName, presentName, type DecoderBuildOptions } from "../graph/decoder.js";
import { HiddenStates } from "./hidden.js";
import type { DecoderSession, ForwardOptions, ForwardPass } from "./types.js";

export interface DecoderSessionOptions {
  /** Build the graph with the stacked hidden-state output (default true). */
  taps?: boolean;
  /** ORT intra-op threads (default: all cores). */
  threads?: number;
  /** Graph cache folder (default $ONEPASS_CACHE_DIR/graphs or ~/.cache/onepass/graphs). */
  cacheDir?: string;
  /** ORT execution providers, e.g. ["cuda", "cpu"]; default ["cpu"]. */
  executionProviders?: string[];
  /** MatMulNBits accuracy level for int4 weights (default 4 = int8 activations). */
  accuracyLevel?: DecoderBuildOptions["accuracyLevel"];
  /** Use MatMulNBits for exact 4-bit weights (default true). */
  int4?: boolean;
  /** Let ORT worker threads spin between ops (default true: faster, burns CPU while idle). */
  allowSpinning?: boolean;
  /** Extra ORT session config entries ("key": "value"). */
  sessionConfig?: Record<string, string>;
}

export async function createDecoderSession(model: LoadedModel, options: DecoderSessionOptions = {}): Promise<DecoderSession> {
  const taps = options.taps ?? true;
  const buildOptions: DecoderBuildOptions = { taps, accuracyLevel: options.accuracyLevel, int4: options.int4 };
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new InvalidArgumentError(`threads must be a positive integer, got ${threads}`, { field: "threads" });
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: options.executionProviders ?? ["cpu"],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    executionMode: "sequential",
    extra: {
      session: { "intra_op.allow_spinning": options.allowSpinning === false ? "0" : "1" },
      ...flattenConfig(options.sessionConfig ?? {}),
    },
  };
  let graph = ensureDecoderGraph(model, buildOptions, { cacheDir: options.cacheDir });
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(graph.modelPath, sessionOptions);
  } catch (first) {
    if (!graph.hit) throw new GraphError(`ONNX Runtime cannot load the decoder: ${(first as Error).message}`, { file: graph.modelPath }, { cause: first });
    // a cached entry that passed validation but does not load: rebuild it once
    graph = ensureDecoderGraph(model, buildOptions, { cacheDir: options.cacheDir, rebuild: true });
    try {
      session = await ort.InferenceSession.create(graph.modelPath, sessionOptions);
    } catch (e) {
      throw new GraphError(`ONNX Runtime cannot load the decoder: ${(e as Error).message}`, { file: graph.modelPath }, { cause: e });
    }
  }
  return new OrtDecoderSession(model, session, taps, graph.hit);
}

/** ORT wants nested objects for dotted config keys: {"a.b": "1"} → {a: {b: "1"}} under `extra`. */
function flattenConfig(cfg: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(cfg)) {
    const parts = k.split(".");
    let node = out;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    node[parts[parts.length - 1]] = v;
  }
  return out;
}

class OrtDecoderSession implements DecoderSession {
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly hasTaps: boolean;
  /** True when the graph came from the on-disk cache. */
  readonly graphCacheHit: boolean;
  /**
   * KV cache: per layer one key and one value buffer [1, kvH, capacity, hd], fed as past_key_values and bound as
   * the present output, so GroupQueryAttention appends in place (its shared-buffer mode) instead of copying the
   * whole past into a new present tensor every step. Positions ≥ pastLength hold stale values GQA never reads.
   */
  private kv: { key: ort.Tensor; value: ort.Tensor }[] = []; // each [1, kvH, capacity, hd]
  private capacity = 0;
  private length = 0;
  private disposed = false;

  constructor(
    private readonly model: LoadedModel,
    private readonly session: ort.InferenceSession,
    taps: boolean,
    cacheHit: boolean,
  ) {
    this.vocabSize = model.spec.vocabSize;
    this.contextLength = model.spec.contextLength;
    this.hasTaps = taps;
    this.graphCacheHit = cacheHit;
  }

  get pastLength(): number {
    return this.length;
  }

  reset(): void {
    this.length = 0;
  }

  truncate(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.length) {
      throw new InvalidArgumentError(`truncate(${n}) outside [0, ${this.length}]`, { field: "n" });
    }
    this.length = n; // later positions are overwritten by the next forward
  }

  /** Grows the KV buffers (powers of two, at most contextLength) to hold `total` positions. */
  private ensureCapacity(total: number): void {
    if (total <= this.capacity) return;
    const { kvHeads, headDim, layers } = this.model.spec;
    let cap = Math.max(64, this.capacity);
    while (cap < total) cap *= 2;
    cap = Math.min(cap, this.contextLength);
    const grow = (old: ort.Tensor | undefined): ort.Tensor => {
      const dst = new Float32Array(kvHeads * cap * headDim); // [1, kvH, cap, hd]
      if (old !== undefined && this.length > 0) {
        const src = old.data as Float32Array; // [1, kvH, oldCap, hd]
        for (let h = 0; h < kvHeads; h++) {
          dst.set(src.subarray(h * this.capacity * headDim, (h * this.capacity + this.length) * headDim), h * cap * headDim);
        }
      }
      return new ort.Tensor("float32", dst, [1, kvHeads, cap, headDim]);
    };
    this.kv = Array.from({ length: layers }, (_, i) => ({ key: grow(this.kv[i]?.key), value: grow(this.kv[i]?.value) }));
    this.capacity = cap;
  }

  async forward(tokens: readonly number[], options: ForwardOptions = {}): Promise<ForwardPass> {
    if (this.disposed) throw new InvalidArgumentError("forward() on a disposed session", { field: "session" });
    const T = tokens.length;
    if (T === 0) throw new InvalidArgumentError("forward() needs at least one token", { field: "tokens" });
    if (this.length + T > this.contextLength) {
      throw new ContextOverflowError(`${this.length} cached + ${T} new tokens exceed the context of ${this.contextLength}`, { field: "context_length" });
    }
    if (options.hidden === true && !this.hasTaps) {
      throw new InvalidArgumentError("hidden states requested from a session built without taps", { field: "taps" });
    }
    const ids = new BigInt64Array(T); // [1, T]
    const positions = new BigInt64Array(T); // [1, T]
    for (let t = 0; t < T; t++) {
      const id = tokens[t];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new InvalidArgumentError(`token id ${id} outside [0, ${this.vocabSize})`, { field: "tokens", offset: t });
      }
      ids[t] = BigInt(id);
      positions[t] = BigInt(this.length + t);
    }
    const all = options.logits === "all";
    const rows = all ? BigInt64Array.from({ length: T }, (_, t) => BigInt(t)) : BigInt64Array.of(BigInt(T - 1)); // [P]
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", ids, [1, T]),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(this.length + T).fill(1n), [1, this.length + T]),
      position_ids: new ort.Tensor("int64", positions, [1, T]),
      logits_positions: new ort.Tensor("int64", rows, [rows.length]),
    };
    this.ensureCapacity(this.length + T);
    const fetches: Record<string, ort.Tensor | null> = { logits: null };
    for (let i = 0; i < this.kv.length; i++) {
      feeds[pastName(i, "key")] = this.kv[i].key;
      feeds[pastName(i, "value")] = this.kv[i].value;
      fetches[presentName(i, "key")] = this.kv[i].key; // same buffer: GQA appends in place
      fetches[presentName(i, "value")] = this.kv[i].value;
    }
    const wantHidden = options.hidden === true;
    if (wantHidden) fetches.hidden_states = null;

    const t0 = performance.now();
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run(feeds, fetches);
    } catch (e) {
      throw new GraphError(`ONNX Runtime run failed: ${(e as Error).message}`, { field: "forward" }, { cause: e });
    }
    const runMs = performance.now() - t0;

    this.length += T;
    const result: ForwardPass = { logits: out.logits.data as Float32Array, positions: rows.length, runMs };
    if (wantHidden) {
      const { layers, dim } = this.model.spec;
      // [L+1, 1, T, d] squeezed to [L+1, T, d]: same buffer, no copy
      result.hidden = new HiddenStates(layers + 1, T, dim, out.hidden_states.data as Float32Array);
    }
    return result;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.kv = [];
    this.capacity = 0;
    await this.session.release();
  }
}
