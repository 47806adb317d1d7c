/**
 * DecoderSession over ONNX Runtime: the decoder graph from graph/ (built once, cached on disk), a KV cache in
 * JS-owned buffers that ORT reads in place (only each run's new rows are copied out), and hidden states from
 * the same run() that produces the logits. Multi-token runs may use a second ORT session over the same weights
 * with another MatMulNBits accuracy level (float activations are faster for prefill, int8 for decode).
 */
import { availableParallelism } from "node:os";
import { dirname } from "node:path";
import * as ort from "onnxruntime-node";
import { ContextOverflowError, GraphError, InvalidArgumentError } from "../errors.js";
import type { LoadedModel } from "../model/spec.js";
import { ensureDecoderGraph } from "../graph/cache.js";
import { withMatMulNBitsAccuracy } from "../graph/onnx.js";
import { newKvName, pastName, type DecoderBuildOptions } from "../graph/decoder.js";
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
  /** MatMulNBits accuracy level for int4 weights in decode steps (default 4 = int8 activations: ~1.5× faster at 1 token). */
  accuracyLevel?: DecoderBuildOptions["accuracyLevel"];
  /**
   * MatMulNBits accuracy level for multi-token runs (prefill). Default 0 (float activations: faster than int8
   * at T = 512 on AVX-512 here). When it differs from `accuracyLevel`, a second ORT session over the same weight
   * file serves multi-token runs; both share the KV cache, which lives in JS.
   */
  prefillAccuracyLevel?: DecoderBuildOptions["accuracyLevel"];
  /** Use MatMulNBits for exact 4-bit weights (default true). */
  int4?: boolean;
  /** Let ORT worker threads spin between ops (default true: faster, burns CPU while idle). */
  allowSpinning?: boolean;
  /** Extra ORT session config entries ("key": "value"). */
  sessionConfig?: Record<string, string>;
  /**
   * Longest run handed to ORT at once (default 1024). Longer forward() calls run in chunks through the KV
   * cache with identical results, bounding ORT's attention scratch (heads × T × (past+T) floats per layer).
   */
  maxChunk?: number;
}

export async function createDecoderSession(model: LoadedModel, options: DecoderSessionOptions = {}): Promise<DecoderSession> {
  const taps = options.taps ?? true;
  const maxChunk = options.maxChunk ?? 1024;
  if (!Number.isInteger(maxChunk) || maxChunk < 1) throw new InvalidArgumentError(`maxChunk must be a positive integer, got ${maxChunk}`, { field: "maxChunk" });
  const buildOptions: DecoderBuildOptions = { taps, accuracyLevel: options.accuracyLevel, int4: options.int4 };
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new InvalidArgumentError(`threads must be a positive integer, got ${threads}`, { field: "threads" });
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: options.executionProviders ?? ["cpu"],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    executionMode: "sequential",
  };
  const config: Record<string, string> = {
    "session.intra_op.allow_spinning": options.allowSpinning === false ? "0" : "1",
    ...options.sessionConfig,
  };
  sessionOptions.extra = nestConfig(config);
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
  // multi-token runs may want another MatMulNBits accuracy level: same weights file, patched node attributes
  let prefillSession = session;
  const decodeLevel = options.accuracyLevel ?? 4;
  const prefillLevel = options.prefillAccuracyLevel ?? 0;
  const patched = prefillLevel !== decodeLevel ? withMatMulNBitsAccuracy(graph.modelPath, prefillLevel) : undefined;
  if (patched !== undefined) {
    try {
      prefillSession = await ort.InferenceSession.create(patched, {
        ...sessionOptions,
        extra: nestConfig({ ...config, "session.model_external_initializers_file_folder_path": dirname(graph.modelPath) }),
      });
    } catch (e) {
      await session.release();
      throw new GraphError(`ONNX Runtime cannot load the prefill decoder: ${(e as Error).message}`, { file: graph.modelPath }, { cause: e });
    }
  }
  return new OrtDecoderSession(model, session, prefillSession, taps, graph.hit, maxChunk);
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

class OrtDecoderSession implements DecoderSession {
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly hasTaps: boolean;
  /** True when the graph came from the on-disk cache. */
  readonly graphCacheHit: boolean;
  /**
   * KV cache: per layer one key and one value buffer [1, kvH, capacity, hd] owned by JS and fed (without a copy)
   * as past_key_values; GroupQueryAttention reads only the first pastLength positions. Each run fetches just its
   * own rows (new_key_values, [1, kvH, T, hd]) and appends them here, so the copy out of ORT per decode step is a
   * few KiB rather than the whole cache. Positions ≥ pastLength hold stale values that are never read.
   */
  private kv: { key: Float32Array; value: Float32Array }[] = []; // each [1, kvH, capacity, hd]
  private capacity = 0;
  private length = 0;
  private disposed = false;
  /** A run is in flight: the KV cache must not be touched by a second forward/reset/truncate meanwhile. */
  private busy = false;

  /**
   * @param session runs of one token (decode)
   * @param prefillSession runs of several tokens (may be `session` itself)
   */
  constructor(
    private readonly model: LoadedModel,
    private readonly session: ort.InferenceSession,
    private readonly prefillSession: ort.InferenceSession,
    taps: boolean,
    cacheHit: boolean,
    /** Longest run given to ORT at once; longer forward() calls are split (see forward). */
    private readonly maxChunk: number,
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
    this.assertIdle("reset");
    this.length = 0;
  }

  truncate(n: number): void {
    this.assertIdle("truncate");
    if (!Number.isInteger(n) || n < 0 || n > this.length) {
      throw new InvalidArgumentError(`truncate(${n}) outside [0, ${this.length}]`, { field: "n" });
    }
    this.length = n; // later positions are overwritten by the next forward
  }

  private assertIdle(what: string): void {
    if (this.busy) throw new InvalidArgumentError(`${what}() while a forward() of this session is still running`, { field: "session" });
  }

  /** Grows the KV buffers (powers of two, at most contextLength) to hold `total` positions. */
  private ensureCapacity(total: number): void {
    if (total <= this.capacity) return;
    const { kvHeads, headDim, layers } = this.model.spec;
    let cap = Math.max(64, this.capacity);
    while (cap < total) cap *= 2;
    cap = Math.min(cap, this.contextLength);
    const grow = (old: Float32Array | undefined): Float32Array => {
      const dst = new Float32Array(kvHeads * cap * headDim); // [1, kvH, cap, hd]
      if (old !== undefined) {
        for (let h = 0; h < kvHeads; h++) {
          dst.set(old.subarray(h * this.capacity * headDim, (h * this.capacity + this.length) * headDim), h * cap * headDim);
        }
      }
      return dst;
    };
    this.kv = Array.from({ length: layers }, (_, i) => ({ key: grow(this.kv[i]?.key), value: grow(this.kv[i]?.value) }));
    this.capacity = cap;
  }

  /** Writes this run's rows src [1, kvH, T, hd] at positions [length, length+T) of dst [1, kvH, capacity, hd]. */
  private append(dst: Float32Array, src: Float32Array, T: number): void {
    const { kvHeads, headDim } = this.model.spec;
    for (let h = 0; h < kvHeads; h++) {
      dst.set(src.subarray(h * T * headDim, (h + 1) * T * headDim), (h * this.capacity + this.length) * headDim);
    }
  }

  async forward(tokens: readonly number[], options: ForwardOptions = {}): Promise<ForwardPass> {
    if (this.disposed) throw new InvalidArgumentError("forward() on a disposed session", { field: "session" });
    this.assertIdle("forward");
    const T = tokens.length;
    if (T === 0) throw new InvalidArgumentError("forward() needs at least one token", { field: "tokens" });
    if (this.length + T > this.contextLength) {
      throw new ContextOverflowError(`${this.length} cached + ${T} new tokens exceed the context of ${this.contextLength}`, { field: "context_length" });
    }
    if (options.hidden === true && !this.hasTaps) {
      throw new InvalidArgumentError("hidden states requested from a session built without taps", { field: "taps" });
    }
    for (let t = 0; t < T; t++) {
      const id = tokens[t];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new InvalidArgumentError(`token id ${id} outside [0, ${this.vocabSize})`, { field: "tokens", offset: t });
      }
    }
    this.busy = true;
    try {
      return T <= this.maxChunk ? await this.run(tokens, options) : await this.runChunked(tokens, options);
    } finally {
      this.busy = false;
    }
  }

  private async runChunked(tokens: readonly number[], options: ForwardOptions): Promise<ForwardPass> {
    const T = tokens.length;
    // Long prompts run in chunks through the KV cache: ORT's attention scratch grows with T × (past+T) per
    // head, so one 8k-token run would need GiBs. Results are assembled as if from one run.
    const start = this.length;
    const { layers, dim } = this.model.spec;
    const wantHidden = options.hidden === true;
    const all = options.logits === "all";
    const hidden = wantHidden ? new Float32Array((layers + 1) * T * dim) : undefined; // [L+1, T, d]
    const logits = all ? new Float32Array(T * this.vocabSize) : undefined; // [T, vocab]
    let last: ForwardPass | undefined;
    let runMs = 0;
    try {
      for (let off = 0; off < T; off += this.maxChunk) {
        const chunk = tokens.slice(off, off + this.maxChunk);
        last = await this.run(chunk, { hidden: wantHidden, logits: all ? "all" : "last" });
        runMs += last.runMs;
        if (hidden !== undefined) {
          for (let l = 0; l <= layers; l++) hidden.set(last.hidden!.layer(l), (l * T + off) * dim);
        }
        logits?.set(last.logits, off * this.vocabSize);
      }
    } catch (e) {
      this.length = start; // the cache holds none of this call's tokens
      throw e;
    }
    return {
      logits: logits ?? last!.logits,
      positions: all ? T : 1,
      hidden: hidden !== undefined ? new HiddenStates(layers + 1, T, dim, hidden) : undefined,
      runMs,
    };
  }

  /** One ORT run over tokens already validated by forward(). */
  private async run(tokens: readonly number[], options: ForwardOptions): Promise<ForwardPass> {
    const T = tokens.length;
    const ids = new BigInt64Array(T); // [1, T]
    const positions = new BigInt64Array(T); // [1, T]
    for (let t = 0; t < T; t++) {
      ids[t] = BigInt(tokens[t]);
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
    const { kvHeads, headDim } = this.model.spec;
    const fetches: string[] = ["logits"];
    for (let i = 0; i < this.kv.length; i++) {
      feeds[pastName(i, "key")] = new ort.Tensor("float32", this.kv[i].key, [1, kvHeads, this.capacity, headDim]);
      feeds[pastName(i, "value")] = new ort.Tensor("float32", this.kv[i].value, [1, kvHeads, this.capacity, headDim]);
      fetches.push(newKvName(i, "key"), newKvName(i, "value"));
    }
    const wantHidden = options.hidden === true;
    if (wantHidden) fetches.push("hidden_states");

    const t0 = performance.now();
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await (T > 1 ? this.prefillSession : this.session).run(feeds, fetches);
    } catch (e) {
      throw new GraphError(`ONNX Runtime run failed: ${(e as Error).message}`, { field: "forward" }, { cause: e });
    }
    const runMs = performance.now() - t0;

    for (let i = 0; i < this.kv.length; i++) {
      this.append(this.kv[i].key, out[newKvName(i, "key")].data as Float32Array, T);
      this.append(this.kv[i].value, out[newKvName(i, "value")].data as Float32Array, T);
    }
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
    if (this.prefillSession !== this.session) await this.prefillSession.release();
  }
}
