/**
 * Builds the Llama-family decoder (llama, qwen2, qwen3) as an ONNX graph with ONNX Runtime contrib ops, a KV
 * cache, logits only for the positions asked, and (with `taps`) one stacked hidden-state output
 * [L+1, B, T, d] in the Hugging Face output_hidden_states convention.
 *
 * Graph inputs:  input_ids [B, T] int64, attention_mask [B, past+T] int64, position_ids [B, T] int64,
 *                logits_positions [P] int64 (rows of this run whose logits are wanted),
 *                past_key_values.{i}.key / .value [B, kvH, past, hd] float32.
 * Graph outputs: logits [B, P, vocab] float32, present.{i}.key / .value [B, kvH, max(past, past+T), hd],
 *                new_key_values.{i}.key / .value [B, kvH, T, hd] (only this run's rows of present),
 *                hidden_states [L+1, B, T, d] float32 (only with taps).
 *
 * The past inputs may be larger than the valid past (a preallocated buffer), and each sequence b of a batch has
 * its own valid length p_b: attention_mask row b is 1 at its p_b past positions and at the T new ones (the last T
 * columns), 0 at the padding between. GroupQueryAttention reads the first sum(mask_b) - T positions of sequence
 * b (its seqlens_k) and writes the new rows right after them; the plain-op path masks the padding out. Fetching
 * just new_key_values keeps the per-step copy out of ORT to B × T rows instead of the whole cache, which is what
 * lets several sequences decode in one run (engine/batch.ts).
 */
import { GraphError, UnsupportedModelError } from "../errors.js";
import { TensorNames, type Int4Blocks, type ModelSpec, type WeightSource } from "../model/spec.js";
import { MS_DOMAIN, OnnxModelBuilder, float } from "../onnx/proto.js";
import { ropeCaches } from "./rope.js";

export interface DecoderBuildOptions {
  /** Add the stacked `hidden_states` output (default true). */
  taps?: boolean;
  /**
   * With taps: make every tap output optional at run time and add per-layer token summaries (see
   * `addTapOutputs`). Default false (the plain `hidden_states` output, computed on every run).
   */
  tapSummaries?: boolean;
  /** MatMulNBits accuracy_level: 0 exact-ish fp32 activations, 4 int8 activations (faster). Default 4. */
  accuracyLevel?: 0 | 1 | 2 | 3 | 4;
  /** Use MatMulNBits where the source stores exact 4-bit blocks (default true); false dequantises to f32. */
  int4?: boolean;
  /** Rows of the rotary cos/sin caches (max position + 1). Default spec.contextLength. */
  maxPositions?: number;
  /** Called as the graph is built (stage "building graph": embedding, each layer, LM head). Not part of the cache key. */
  onProgress?: ProgressCallback;
}

/** One progress report of long model work: `done` of `total` units of `stage` are finished. */
export interface ProgressEvent {
  stage: string;
  done: number;
  total: number;
  unit: string;
}

/** Receives progress reports; long work calls it synchronously, so it should be cheap. */
export type ProgressCallback = (p: ProgressEvent) => void;

/** Stage name of buildDecoderGraph's reports. */
export const BUILD_GRAPH_STAGE = "building graph";

/** Bump when the graph layout changes, so cached graphs are rebuilt. */
export const DECODER_BUILDER_VERSION = 7;

export interface DecoderGraphInfo {
  modelPath: string;
  taps: boolean;
  blocks: number;
  /** Names of the past/present tensors per layer. */
  pastNames: { key: string; value: string }[];
  presentNames: { key: string; value: string }[];
}

export const pastName = (i: number, kind: "key" | "value") => `past_key_values.${i}.${kind}`;
export const presentName = (i: number, kind: "key" | "value") => `present.${i}.${kind}`;
export const newKvName = (i: number, kind: "key" | "value") => `new_key_values.${i}.${kind}`;

/** Writes `modelPath` (+ `.data`) for the decoder described by spec + weights. */
export function buildDecoderGraph(
  spec: ModelSpec,
  weights: WeightSource,
  modelPath: string,
  options: DecoderBuildOptions = {},
): DecoderGraphInfo {
  const taps = options.taps ?? true;
  const tapSummaries = taps && options.tapSummaries === true;
  const accuracyLevel = options.accuracyLevel ?? 4;
  const useInt4 = options.int4 ?? true;
  const maxPositions = options.maxPositions ?? spec.contextLength;
  const { dim: d, heads: H, kvHeads: KV, headDim: hd, blocks: L, ffnDim: F, vocabSize: V } = spec;
  if (H % KV !== 0) throw new UnsupportedModelError(`heads ${H} not a multiple of kv heads ${KV}`, { file: weights.path, field: "head_count_kv" });
  if (spec.ropeDim !== hd) throw new UnsupportedModelError(`partial rotary (ropeDim ${spec.ropeDim} ≠ headDim ${hd})`, { file: weights.path, field: "rope.dimension_count" });

  // embedding + L layers + LM head; no work at all when nobody listens
  const onProgress = options.onProgress;
  const buildSteps = L + 2;
  const report = onProgress === undefined ? () => {} : (done: number) => onProgress({ stage: BUILD_GRAPH_STAGE, done, total: buildSteps, unit: "part" });

  const g = new OnnxModelBuilder(modelPath);
  try {
    report(0);
    // ---- inputs
    const inputIds = g.input("input_ids", "int64", ["B", "T"]); // [B, T]
    const attentionMask = g.input("attention_mask", "int64", ["B", "total"]); // [B, past+T]
    const positionIds = g.input("position_ids", "int64", ["B", "T"]); // [B, T]
    const logitsPositions = g.input("logits_positions", "int64", ["P"]); // [P]
    const pastNames: DecoderGraphInfo["pastNames"] = [];
    const presentNames: DecoderGraphInfo["presentNames"] = [];
    for (let i = 0; i < L; i++) {
      pastNames.push({ key: g.input(pastName(i, "key"), "float32", ["B", KV, "past", hd]), value: g.input(pastName(i, "value"), "float32", ["B", KV, "past", hd]) }); // [B, kvH, past, hd]
      presentNames.push({ key: presentName(i, "key"), value: presentName(i, "value") });
    }

    // ---- GroupQueryAttention bookkeeping from the mask: seqlens_k[b] = sum(mask_b) - 1, total_sequence_length
    const maskSum = g.op("ReduceSum", [attentionMask, g.constI64([1])], { keepdims: 0 }); // [B]
    const seqlensK64 = g.op("Sub", [maskSum, g.constI64([1], [])]); // [B] int64
    const seqlensK = g.op("Cast", [seqlensK64], { to: 6 }); // [B] int32
    const totalLen64 = g.op("Gather", [g.op("Shape", [attentionMask]), g.constI64([1])], { axis: 0 }); // [1] int64 = past+T
    const totalLen = g.op("Cast", [g.op("Squeeze", [totalLen64, g.constI64([0])])], { to: 6 }); // [] int32
    const runLen = g.op("Gather", [g.op("Shape", [inputIds]), g.constI64([1])], { axis: 0 }); // [1] int64 = T
    const pastLen = g.op("Sub", [totalLen64, runLen]); // [1] int64

    // ---- rotary caches; GQA's fused rotary needs head_size % 16 == 0, else a separate RotaryEmbedding
    const { cos, sin } = ropeCaches(spec, maxPositions);
    const cosCache = g.initializer("rope_cos", "float32", [maxPositions, hd / 2], cos); // [maxPos, hd/2]
    const sinCache = g.initializer("rope_sin", "float32", [maxPositions, hd / 2], sin); // [maxPos, hd/2]
    // ORT's GroupQueryAttention kernel needs head_size % 8 == 0 (tiny test models have 4): plain ops otherwise
    const gqaKernel = hd % 8 === 0;
    const fusedRotary = gqaKernel && hd % 16 === 0;
    const causalBias = gqaKernel ? "" : causalMaskBias(g, attentionMask, pastLen, totalLen64); // [B, 1, T, past+T]
    // where GroupQueryAttention put this run's rows in present: row t of sequence b at seqlens_k[b] + 1 - T + t
    const newRowIndex = gqaKernel ? newRowIndices(g, seqlensK64, runLen, KV, hd) : ""; // [B, kvH, T, hd] int64
    const interleaved = spec.ropeStyle === "interleaved" ? 1 : 0;

    /** y = x·Wᵀ for the row-concatenation of `names` ([out_i, in] each). x [B, T, inDim] → [B, T, Σout_i]. */
    const linear = (x: string, names: string[], inDim: number, label: string): string => {
      const blocks = useInt4 && weights.readInt4 ? names.map((n) => weights.readInt4!(n)) : [];
      if (blocks.length > 0 && blocks.every((b) => b !== undefined)) {
        const b = concatInt4(blocks as Int4Blocks[]);
        const nBlocks = Math.ceil(b.k / 32);
        const mmInputs = [
          x,
          g.initializer(`${label}.q4`, "uint8", [b.n, nBlocks, 16], b.data), // [N, K/32, 16]
          g.initializer(`${label}.scales`, "float32", [b.n * nBlocks], b.scales), // [N * K/32]
        ];
        if (b.zeroPoints !== undefined) {
          mmInputs.push(g.initializer(`${label}.zero_points`, "uint8", [b.n * Math.ceil(nBlocks / 2)], b.zeroPoints)); // [N * ceil(K/64)]
        }
        return g.op("MatMulNBits", mmInputs, { K: b.k, N: b.n, bits: 4, block_size: 32, accuracy_level: accuracyLevel }, MS_DOMAIN); // [B, T, N]
      }
      const mats = names.map((n) => weights.readF32(n)); // each [out_i, in]
      const outDim = mats.reduce((a, m) => a + m.length / inDim, 0);
      const wt = new Float32Array(inDim * outDim); // [in, out] (transposed once here)
      let col = 0;
      for (const m of mats) {
        const rows = m.length / inDim;
        for (let r = 0; r < rows; r++) for (let i = 0; i < inDim; i++) wt[i * outDim + col + r] = m[r * inDim + i];
        col += rows;
      }
      return g.op("MatMul", [x, g.initializer(`${label}.weight_t`, "float32", [inDim, outDim], wt)]); // [B, T, out]
    };
    const vector = (name: string) => g.initializer(name, "float32", [weights.info(name).shape.reduce((a, b) => a * b, 1)], weights.readF32(name));

    // ---- embeddings: x0 [B, T, d]
    let residual = embedding(g, weights, inputIds, V, d, useInt4); // [B, T, d]
    report(1);
    const hiddenTaps: string[] = [residual]; // each [B, T, d]
    let normed = g.op("SimplifiedLayerNormalization", [residual, vector(TensorNames.block(0).attnNorm)], { axis: -1, epsilon: float(spec.rmsNormEps) }); // [B, T, d]

    for (let i = 0; i < L; i++) {
      const n = TensorNames.block(i);
      // ---- attention: attn [B, T, d]
      const qkvDim = (H + 2 * KV) * hd;
      let qkv = linear(normed, [n.q, n.k, n.v], d, `blk.${i}.attn_qkv`); // [B, T, (H+2KV)*hd]
      if (spec.qkvBias) {
        const bias = new Float32Array(qkvDim); // [(H+2KV)*hd]
        bias.set(weights.readF32(n.qBias), 0);
        bias.set(weights.readF32(n.kBias), H * hd);
        bias.set(weights.readF32(n.vBias), (H + KV) * hd);
        qkv = g.op("Add", [qkv, g.initializer(`blk.${i}.attn_qkv.bias`, "float32", [qkvDim], bias)]); // [B, T, (H+2KV)*hd]
      }
      let attnInputs: string[];
      if (fusedRotary && !spec.qkNorm) {
        attnInputs = [qkv, "", ""]; // packed QKV
      } else {
        let [q, k, v] = g.node("Split", [qkv, g.constI64([H * hd, KV * hd, KV * hd])], 3, { axis: -1 }); // [1,T,H*hd], [1,T,KV*hd] x2
        if (spec.qkNorm) {
          const headNorm = (x: string, w: string) => {
            const perHead = g.op("Reshape", [x, g.constI64([0, 0, -1, hd])]); // [B, T, heads, hd]
            const y = g.op("SimplifiedLayerNormalization", [perHead, vector(w)], { axis: -1, epsilon: float(spec.rmsNormEps) }); // [B, T, heads, hd]
            return g.op("Reshape", [y, g.constI64([0, 0, -1])]); // [B, T, heads*hd]
          };
          q = headNorm(q, n.qNorm);
          k = headNorm(k, n.kNorm);
        }
        if (!fusedRotary) {
          const rope = (x: string, heads: number) =>
            g.op("RotaryEmbedding", [x, positionIds, cosCache, sinCache], { interleaved, num_heads: heads, rotary_embedding_dim: hd }, MS_DOMAIN); // [B, T, heads*hd]
          q = rope(q, H);
          k = rope(k, KV);
        }
        attnInputs = [q, k, v];
      }
      const present = presentNames[i];
      let attnHeads: string; // [B, T, H*hd]
      if (gqaKernel) {
        const gqaInputs = [...attnInputs, pastNames[i].key, pastNames[i].value, seqlensK, totalLen];
        if (fusedRotary) gqaInputs.push(cosCache, sinCache);
        [attnHeads] = g.node("GroupQueryAttention", gqaInputs, [g.fresh("attn"), present.key, present.value], {
          num_heads: H,
          kv_num_heads: KV,
          do_rotary: fusedRotary ? 1 : 0,
          rotary_interleaved: interleaved,
        }, MS_DOMAIN); // [B, T, H*hd]
        for (const kind of ["key", "value"] as const) {
          // this run's rows of the cache (RoPE applied): present[b, :, p_b:p_b+T, :] for each sequence b
          g.node("GatherElements", [present[kind], newRowIndex], [newKvName(i, kind)], { axis: 2 }); // [B, kvH, T, hd]
        }
      } else {
        attnHeads = plainAttention(g, attnInputs, pastNames[i], pastLen, present, [newKvName(i, "key"), newKvName(i, "value")], causalBias, { H, KV, hd });
      }
      const attn = linear(attnHeads, [n.o], H * hd, `blk.${i}.attn_output`); // [B, T, d]

      // residual += attn; normed = ffn_norm(residual)
      const afterAttn = g.node("SkipSimplifiedLayerNormalization", [attn, residual, vector(n.ffnNorm)], [g.fresh("ffn_in"), "", "", g.fresh("resid")], { epsilon: float(spec.rmsNormEps) }, MS_DOMAIN);
      normed = afterAttn[0]; // [B, T, d]
      residual = afterAttn[3]; // [B, T, d]

      // ---- SwiGLU feed-forward: ffn [B, T, d]
      // two matmuls rather than one fused [2F] matmul + Split: the Split's copy cost more than it saved
      const gate = linear(normed, [n.gate], d, `blk.${i}.ffn_gate`); // [B, T, F]
      const up = linear(normed, [n.up], d, `blk.${i}.ffn_up`); // [B, T, F]
      const act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up]); // [B, T, F]
      const ffn = linear(act, [n.down], F, `blk.${i}.ffn_down`); // [B, T, d]

      // residual += ffn; normed = next block's attn_norm(residual), or the final norm after the last block
      const nextNorm = i + 1 < L ? TensorNames.block(i + 1).attnNorm : TensorNames.outputNorm;
      const afterFfn = g.node("SkipSimplifiedLayerNormalization", [ffn, residual, vector(nextNorm)], [g.fresh("normed"), "", "", g.fresh("resid")], { epsilon: float(spec.rmsNormEps) }, MS_DOMAIN);
      normed = afterFfn[0]; // [B, T, d]
      residual = afterFfn[3]; // [B, T, d]
      hiddenTaps.push(i + 1 < L ? residual : normed); // HF convention: the last entry is after the final norm
      report(i + 2);
    }

    // ---- LM head only on the rows asked for
    const rows = g.op("Gather", [normed, logitsPositions], { axis: 1 }); // [B, P, d]
    const headName = spec.tiedEmbeddings || !weights.has(TensorNames.output) ? TensorNames.tokenEmbedding : TensorNames.output;
    g.node("Identity", [linear(rows, [headName], d, "lm_head")], ["logits"]); // [B, P, V]
    g.output("logits", "float32", ["B", "P", V]);
    for (let i = 0; i < L; i++) {
      g.output(presentNames[i].key, "float32", ["B", KV, "present", hd]); // [B, kvH, max(past, past+T), hd]
      g.output(presentNames[i].value, "float32", ["B", KV, "present", hd]); // [B, kvH, max(past, past+T), hd]
      g.output(newKvName(i, "key"), "float32", ["B", KV, "T", hd]); // [B, kvH, T, hd]
      g.output(newKvName(i, "value"), "float32", ["B", KV, "T", hd]); // [B, kvH, T, hd]
    }
    if (tapSummaries) {
      addTapOutputs(g, hiddenTaps, attentionMask, runLen, d);
    } else if (taps) {
      // unsqueeze each tap (a free view) so that Concat writes straight into the graph output: one copy
      const axis0 = g.constI64([0]);
      const taps4d = hiddenTaps.map((t) => g.op("Unsqueeze", [t, axis0])); // each [1, B, T, d]
      g.node("Concat", taps4d, ["hidden_states"], { axis: 0 }); // [L+1, B, T, d]
      g.output("hidden_states", "float32", [L + 1, "B", "T", d]);
    }
    g.finish();
    report(buildSteps);
    return { modelPath, taps, blocks: L, pastNames, presentNames };
  } catch (e) {
    g.abort();
    if (e instanceof GraphError || e instanceof UnsupportedModelError) throw e;
    throw new GraphError(`building the decoder graph failed: ${(e as Error).message}`, { file: weights.path }, { cause: e });
  }
}

/** Names of the run-time tap controls and outputs of a graph built with `tapSummaries`. */
export const TAP = {
  /** bool []: compute `hidden_states` [L+1, B, T, d] (else it is empty [L+1, 0, 0, d]). */
  hidden: "tap_hidden",
  /** bool []: compute `tap_pooled` [B, L+1, 2, d]: per layer the masked sum over the run's tokens and the last real token. */
  pooled: "tap_pooled",
  /** bool []: compute `tap_max_out` [B, L+1, d]: per layer the elementwise max over the run's real tokens. */
  max: "tap_max",
  /** bool []: compute `tap_proj_out` [L+1, B, T, P] = x_l · W_l + b_l from the fed projections (MHA probes' Q, K, V). */
  proj: "tap_proj",
  /** float32 [L+1, d, P] */
  projWeights: "tap_proj_weights",
  /** float32 [L+1, 1, P] */
  projBias: "tap_proj_bias",
  projOut: "tap_proj_out",
  /** bool []: compute `tap_attn_out` [L+1, B, H, d]: per layer and head the query-mean attention's read of the run's tokens (SummaryAttention). */
  attn: "tap_attn",
  /** float32 [L+1, d, 2·H·hd]: W_q (scaled by 1/√hd) then W_k of every head */
  attnWeights: "tap_attn_weights",
  /** float32 [L+1, 1, 2·H·hd] */
  attnBias: "tap_attn_bias",
  /** int64 [2]: H, hd */
  attnHeads: "tap_attn_heads",
  attnOut: "tap_attn_out",
  /** bool []: compute `tap_gate_reads` [B, L+1, K] and `tap_gate_den` [B, L+1, G] from the fed gates. */
  gates: "tap_gates",
  /** float32 [L+1, d, G+K]: per layer, gate g's score vector in column g, then the K read vectors (read only when tap_gates). */
  gateWeights: "tap_gate_weights",
  /** float32 [L+1, 1, G]: gate g's score bias per layer. */
  gateBias: "tap_gate_bias",
  /** int64 [K]: the gate (0..G−1) whose softmax weights read column k. */
  gateReadOf: "tap_gate_read_of",
  /** bool []: compute the summaries over one stack of every layer [B, L+1, T, d] (else per layer): stackSummaries. */
  stack: "tap_stack",
  pooledOut: "tap_pooled_out",
  maxOut: "tap_max_out",
  gateReadsOut: "tap_gate_reads",
  gateDenOut: "tap_gate_den",
} as const;

/** Layout of the tap controls and outputs (part of the graph cache key of `tapSummaries` graphs). */
export const TAP_LAYOUT = 21;

/** Layers per op chain of the tap attention (tap_attn_out): at T 128 on the 0.5B shape 1 → 5 took the branch 9.8 → 7.8 ms. */
const ATTN_GROUP = 5;
/** Runs up to this many tokens may compute the summaries over one stack of every layer (stackSummaries). */
export const STACK_TOKENS = 128;
/** T·d of a layer up to which every summary is computed over a stack (stackSummaries). */
export const SMALL_STACK = 65536;

/**
 * Whether a run of T tokens computes its summaries over one stack of every layer (the `tap_stack` control). A stack
 * costs its Concat (a read of every layer into a fresh [B, L+1, T, d] buffer) and then one pass over it per summary;
 * per layer, each summary reads every layer's taps where they lie, in L+1 products instead of one. Neither keeps a
 * layer in cache between its reads, so the stack moves more memory and wins only by fewer nodes: where it is
 * small (T·d ≤ SMALL_STACK), where MHA reads need it anyway (one product for every layer's projections), and for
 * max (one ReduceMax over the stack is cheaper than L+1 of them). Profiled tap branches, T 128 against 129 in
 * alternating processes, 0.5B shape (d 896), ms:
 *
 *   asked for            per layer    over a stack
 *   sums, last token     1.5–1.7      1.8–9.9   (T 64: 1.2–1.3 / 1.1–1.3; T 32: 1.0 / 0.8; d 64: 0.80 / 0.58–0.63)
 *   a scoring gate       2.3–2.6      1.7–10.7
 *   sums and max         3.0–3.3      2.0–6.2
 *   sums, max and gate   4.9–5.6      3.8–4.8
 *
 * The stack's spread is the machine's memory bandwidth, which the Concat and the passes over it depend on most (a
 * stack of 23 MB at T 256 took 5–9 ms in some runs and ~40 ms in others), hence the limit STACK_TOKENS. These
 * figures predate the one-row products (each pooled row times x_l alone) and the gate reads (one product per layer,
 * gateSums), which made both sides cheaper. With them (T 128, alternating, in a slow stretch of the machine): a gate
 * 1.9–2.4 ms per layer, 2.2–2.3 over a stack; sums and max 3.3–3.4 / 2.3–2.6; sums, max and a gate 5.5–6.4 / 3.9
 * (the L+1 ReduceMax nodes took 1.5–2.1 ms against 0.4–0.5 for one over the stack). So max now takes the stack
 * with or without gates.
 */
export function stackSummaries(T: number, d: number, reads: { max: boolean; mha: boolean }): boolean {
  return T <= STACK_TOKENS && (reads.mha || reads.max || T * d <= SMALL_STACK);
}

/** Larger than any hidden-state magnitude, finite: the masked max's fill for padding. */
const NEG_BIG = -3.0e38;

/**
 * The tap outputs of a `tapSummaries` graph, each behind an If on its own bool input so that a run computes only
 * what it fetches (ORT runs every node of a graph whatever is fetched: a plain `hidden_states` Concat costs its
 * copy on every prefill and decode step). Summaries are per layer over this run's real tokens, computed from each
 * layer's taps or, where tap_stack says, from one stack of them [B, L+1, T, d] that exists only while a summary is
 * asked for. The token mask is the last T columns of attention_mask (1 = real token; a right- or left-padded row of
 * a batch is summarised over its own tokens only).
 *
 *   tap_pooled_out [B, L+1, 2, d]: [mask; last-token one-hot] [B, 2, T] · x_l [B, T, d]
 *   tap_max_out    [B, L+1, d]:    max over real tokens
 *   tap_gate_reads [B, L+1, K]:    Σ_t e^{s_t} (x_t · r_lk) with s_t = tanh(x_t · w_lg + b_lg), g the gate of read k (a
 *                                  scoring gate's softmax numerator Σ_t e^{s_t} x_t, read along the few directions its probe uses)
 *   tap_gate_den   [B, L+1, G]:    Σ_t e^{s_t}
 *   tap_proj_out   [L+1, B, T, P]: x_l · W_l + b_l per token (an MHA probe's Q, K, V: P = 3·d/f ≪ d per probe)
 *   tap_attn_out   [L+1, B, H, d]: Σ_s ā_h,s x_l,s with ā_h = the mean over real queries of softmax(q_t · k_s) over
 *                  real keys, per head h (mean-pooled MHA probes, one run covering the prompt: types/summary.ts)
 *
 * A sum over chunks of these is the whole prompt's (types/summary.ts); the probes' own weights never enter the
 * graph (gate vectors are inputs), so one decoder graph and one session serve every probe set.
 */
function addTapOutputs(g: OnnxModelBuilder, taps: string[], attentionMask: string, runLen: string, d: number): void {
  const L1 = taps.length;
  const flag = (name: string) => g.input(name, "bool", []); // []
  const wantHidden = flag(TAP.hidden);
  const wantPooled = flag(TAP.pooled);
  const wantMax = flag(TAP.max);
  const wantGates = flag(TAP.gates);
  const gateWeights = g.input(TAP.gateWeights, "float32", [L1, d, "GK"]); // [L+1, d, G+K]
  const gateBias = g.input(TAP.gateBias, "float32", [L1, 1, "G"]); // [L+1, 1, G]
  const gateReadOf = g.input(TAP.gateReadOf, "int64", ["K"]); // [K]
  const wantProj = flag(TAP.proj);
  const projWeights = g.input(TAP.projWeights, "float32", [L1, d, "P"]); // [L+1, d, P]
  const projBias = g.input(TAP.projBias, "float32", [L1, 1, "P"]); // [L+1, 1, P]
  const wantAttn = flag(TAP.attn);
  const overStack = flag(TAP.stack);
  const attnWeights = g.input(TAP.attnWeights, "float32", [L1, d, "A"]); // [L+1, d, 2·H·hd]
  const attnBias = g.input(TAP.attnBias, "float32", [L1, 1, "A"]); // [L+1, 1, 2·H·hd]
  const attnHeads = g.input(TAP.attnHeads, "int64", [2]); // [2]: H, hd
  const empty = (dims: number[]) => g.initializer(g.fresh("empty"), "float32", dims, new Float32Array(0));
  /** An If on `cond` whose then-branch builds `then()` and whose else-branch gives empty tensors; returns its outputs. */
  const ifOrEmpty = (cond: string, outputs: string[] | number, then: () => string[], emptyDims: number[][], dims: (string | number)[][]): string[] => {
    const thenBranch = g.subgraph(g.fresh("then"), () => then().map((name, i) => ({ name, type: "float32" as const, dims: dims[i] })));
    const elseBranch = g.subgraph(g.fresh("else"), () => emptyDims.map((e, i) => ({ name: g.op("Identity", [empty(e)]), type: "float32" as const, dims: dims[i] })));
    return g.node("If", [cond], outputs, { then_branch: thenBranch, else_branch: elseBranch });
  };
  /** A graph output behind an If (ifOrEmpty). */
  const ifNode = (cond: string, outputs: string[], then: () => string[], emptyDims: number[][], dims: (string | number)[][]) => {
    ifOrEmpty(cond, outputs, then, emptyDims, dims);
    outputs.forEach((o, i) => g.output(o, "float32", dims[i]));
  };
  // the run's token mask [B, T] (inside each branch: a run that fetches nothing pays for nothing)
  const tokenMask = () => g.op("Slice", [attentionMask, g.op("Neg", [runLen]), g.constI64([Number.MAX_SAFE_INTEGER]), g.constI64([1])]); // [B, T] int64
  const maskF = () => g.op("Cast", [tokenMask()], { to: 1 }); // [B, T] float

  ifNode(wantHidden, ["hidden_states"], () => {
    const axis0 = g.constI64([0]);
    return [g.op("Concat", taps.map((t) => g.op("Unsqueeze", [t, axis0])), { axis: 0 })]; // [L+1, B, T, d]
  }, [[L1, 0, 0, d]], [[L1, "tap_B", "tap_T", d]]);

  // Every summary sits behind one outer If (some summary is asked for) and its own inner If. A stack of the taps
  // never leaves the If that builds it: a stack handed out as an If's output measured 16–44 ms of copying against
  // 0.7 ms inside the branch that reads it.
  const innerIf = (cond: string, then: () => string[], emptyDims: number[][], dims: (string | number)[][]) => ifOrEmpty(cond, emptyDims.length, then, emptyDims, dims);
  /** A bool [] that is true when the run's token mask has a padding position. */
  const hasPadding = (mask: string) => g.op("Equal", [g.op("ReduceMin", [mask], { keepdims: 0 }), g.constI64([0], [])]);
  const outputs = [TAP.pooledOut, TAP.maxOut, TAP.gateReadsOut, TAP.gateDenOut, TAP.projOut, TAP.attnOut];
  const emptyDims = [[0, L1, 2, d], [0, L1, d], [0, L1, 1], [0, L1, 1], [L1, 0, 0, 1], [L1, 0, 0, d]];
  const dims: (string | number)[][] = [["tap_B", L1, 2, d], ["tap_B", L1, d], ["tap_B", L1, "K"], ["tap_B", L1, "G"], [L1, "tap_B", "tap_T", "P"], [L1, "tap_B", "tap_H", d]];
  const any = [wantMax, wantGates, wantProj, wantAttn].reduce((a, b) => g.op("Or", [a, b]), wantPooled); // bool []
  ifNode(any, outputs, () => {
    const toLayerMajor = (x: string) => g.op("Transpose", [x], { perm: [1, 0, 2, 3] }); // [B, L+1, ·, ·] → [L+1, B, ·, ·]
    /** The stack of every layer's taps: [B, L+1, T, d] (one Concat along the token axis, then a free Reshape). */
    const stackAll = () => g.op("Reshape", [g.op("Concat", taps, { axis: 1 }), g.constI64([0, L1, -1, d])]);
    /** x_l · W_l + b_l for every layer of a stack X [B, L+1, T, d]: [B, L+1, T, n] from weights [L+1, d, n] and biases [L+1, 1, n] */
    const perLayerLinear = (X: string, w: string, b: string) => g.op("Add", [g.op("MatMul", [X, w]), b]);
    /** [mask; last-token one-hot] [B, 2, T] of the run's real tokens */
    const poolRows = () => {
      const m = maskF(); // [B, T]
      const count = g.op("ReduceSum", [m, g.constI64([1])], { keepdims: 1 }); // [B, 1]
      const running = g.op("CumSum", [m, g.constI64([1], [])]); // [B, T]
      const last = g.op("Mul", [g.op("Cast", [g.op("Equal", [running, count])], { to: 1 }), m]); // [B, T] one-hot at the last real token
      return g.op("Concat", [g.op("Unsqueeze", [m, g.constI64([1])]), g.op("Unsqueeze", [last, g.constI64([1])])], { axis: 1 }); // [B, 2, T]
    };
    /**
     * A scoring gate's sums from every layer's products Y [L+1, B, T, G+K] = x_l · [w_l | r_l]: the softmax numerator
     * read along r_lk and the denominator. Reading Σ_t e^{s_t} x_t only along the K directions its probe uses (the
     * layer gate and the head, folded with the standardisation: probe/summary.ts) takes one product per layer
     * instead of a second pass over x_l per gate (each gate's row e times x_l): at T 128 on the 0.5B shape, one gate
     * 1.6 → 1.0 ms and four gates 3.5 → 1.3 ms in a microbenchmark with the taps out of cache; in the prefill's
     * profile, four scoring probes' summaries 3.3 → 2.4–2.6 ms.
     */
    const gateSums = (Y: string): string[] => {
      const sizes = g.op("Concat", [g.op("Shape", [gateBias], { start: 2 }), g.op("Shape", [gateReadOf])], { axis: 0 }); // [2]: G, K
      const [S, R] = g.node("Split", [Y, sizes], 2, { axis: 3 }); // [L+1, B, T, G], [L+1, B, T, K]
      const bias = g.op("Unsqueeze", [gateBias, g.constI64([1])]); // [L+1, 1, 1, G]
      const m = g.op("Unsqueeze", [maskF(), g.constI64([0, 3])]); // [1, B, T, 1]
      const e = g.op("Mul", [g.op("Exp", [g.op("Tanh", [g.op("Add", [S, bias])])]), m]); // [L+1, B, T, G]
      const reads = g.op("ReduceSum", [g.op("Mul", [g.op("Gather", [e, gateReadOf], { axis: 3 }), R]), g.constI64([2])], { keepdims: 0 }); // [L+1, B, K]
      const den = g.op("ReduceSum", [e, g.constI64([2])], { keepdims: 0 }); // [L+1, B, G]
      return [g.op("Transpose", [reads], { perm: [1, 0, 2] }), g.op("Transpose", [den], { perm: [1, 0, 2] })]; // [B, L+1, K], [B, L+1, G]
    };
    // The masked max copies the taps (Where), so it runs only when a row of this run has padding; a run of real
    // tokens only (every prefill piece and decode step the engine makes) reduces them in place.
    const maxBranches = (masked: (valid: string) => string, dense: () => string) => {
      const mask = tokenMask(); // [B, T] int64
      const valid = () => g.op("Cast", [mask], { to: 9 }); // bool [B, T]
      return g.node("If", [hasPadding(mask)], 1, {
        then_branch: g.subgraph(g.fresh("max_masked"), () => [{ name: masked(valid()), type: "float32" as const, dims: dims[1] }]),
        else_branch: g.subgraph(g.fresh("max_dense"), () => [{ name: dense(), type: "float32" as const, dims: dims[1] }]),
      });
    };
    const fill = () => g.constF32([NEG_BIG], []);

    /** MHA's projections and attention reads from a stack of every layer X [B, L+1, T, d] (each behind its own If). */
    const mhaSummaries = (X: string): string[] => {
      const [proj] = innerIf(wantProj, () => [toLayerMajor(perLayerLinear(X, projWeights, projBias))], [emptyDims[4]], [dims[4]]); // [L+1, B, T, P]

      const [attn] = innerIf(wantAttn, () => {
        // Q and K projected transposed, Wᵀ · xᵀ per layer: head-major with the tokens last, so each group's q and k
        // are slices of it (projected as x · W, they took a Transpose, a Split and a Split per group: 0.8 of a 9 ms
        // branch at T 128 on the 0.5B shape)
        const biasT = g.op("Transpose", [attnBias], { perm: [0, 2, 1] }); // [L+1, 2·H·hd, 1]
        const qkT = g.op("Add", [g.op("FusedMatMul", [attnWeights, X], { transA: 1, transB: 1 }, MS_DOMAIN), biasT]); // [B, L+1, 2·H·hd, T]
        const byHead = g.op("Reshape", [qkT, g.op("Concat", [g.constI64([0, 0, 2]), attnHeads, g.constI64([-1])], { axis: 0 })]); // [B, L+1, 2, H, hd, T]
        // layers in groups of ATTN_GROUP: a group's scores [B, S, H, T, T] stay a few MB (all layers' at once measured
        // 2× slower at T 256, most of it fresh memory), and there are (L+1)/S op chains instead of L+1
        const groups = Array.from({ length: Math.ceil(L1 / ATTN_GROUP) }, (_, i) => {
          const l0 = i * ATTN_GROUP, l1 = Math.min(L1, l0 + ATTN_GROUP);
          const part = (which: number) => g.op("Slice", [byHead, g.constI64([l0, which]), g.constI64([l1, which + 1]), g.constI64([1, 2])]); // [B, S, 1, H, hd, T]
          return { q: part(0), k: part(1) };
        });
        const mask = tokenMask(); // [B, T] int64
        const m = g.op("Cast", [mask], { to: 1 }); // [B, T]
        const count = g.op("Max", [g.op("ReduceSum", [m, g.constI64([1])], { keepdims: 1 }), g.constF32([1], [])]); // [B, 1]
        const queryWeights = g.op("Unsqueeze", [g.op("Div", [m, count]), g.constI64([1, 2, 3, 4])]); // [B, 1, 1, 1, 1, T]: 1/T at real queries
        // the query-mean attention of every layer [B, L+1, 1, H, 1, T(key)]
        const meanAttention = (keyBias?: string) => g.op("Concat", groups.map(({ q, k }) => {
          const scores = g.op("FusedMatMul", [q, k], { transA: 1 }, MS_DOMAIN); // [B, S, 1, H, T(query), T(key)], 1/√hd folded into W_q
          const att = g.op("Softmax", [keyBias === undefined ? scores : g.op("Add", [scores, keyBias])], { axis: -1 }); // [B, S, 1, H, T, T]
          return g.op("MatMul", [queryWeights, att]); // [B, S, 1, H, 1, T(key)]
        }), { axis: 1 });
        // one batched read of the tokens: [B, L+1, H, T] · X [B, L+1, T, d], to [L+1, B, H, d]
        const read = (meanAtt: string) => toLayerMajor(g.op("MatMul", [g.op("Squeeze", [meanAtt, g.constI64([2, 4])]), X]));
        // padding keys are masked only where a row has padding (the engine's runs have none): the bias Add is a pass over T×T
        const masked = g.subgraph(g.fresh("attn_masked"), () => {
          const keyBias = g.op("Unsqueeze", [g.op("Where", [g.op("Cast", [mask], { to: 9 }), g.constF32([0], []), g.constF32([NEG_BIG], [])]), g.constI64([1, 2, 3, 4])]); // [B, 1, 1, 1, 1, T]
          return [{ name: read(meanAttention(keyBias)), type: "float32" as const, dims: dims[5] }];
        });
        const dense = g.subgraph(g.fresh("attn_dense"), () => [{ name: read(meanAttention()), type: "float32" as const, dims: dims[5] }]);
        return g.node("If", [hasPadding(mask)], 1, { then_branch: masked, else_branch: dense }); // [L+1, B, H, d]
      }, [emptyDims[5]], [dims[5]]);
      return [proj, attn];
    };
    // Sum and last token, max and gates: over a stack of every layer (one batched chain per summary; MHA's summaries
    // share the stack) or per layer, as tap_stack says (stackSummaries).
    const stacked = g.subgraph(g.fresh("summaries_stacked"), () => {
      const X = stackAll(); // [B, L+1, T, d]
      const [pooled] = innerIf(wantPooled, () => {
        const rows = g.op("Unsqueeze", [g.op("Transpose", [poolRows()], { perm: [1, 0, 2] }), g.constI64([2, 3])]); // [2, B, 1, 1, T]: each row alone (M = 1)
        return [g.op("Transpose", [g.op("Squeeze", [g.op("MatMul", [rows, X]), g.constI64([3])])], { perm: [1, 2, 0, 3] })]; // [2, B, L+1, 1, d] → [B, L+1, 2, d]
      }, [emptyDims[0]], [dims[0]]);
      const [max] = innerIf(wantMax, () => maxBranches(
        (valid) => g.op("ReduceMax", [g.op("Where", [g.op("Unsqueeze", [valid, g.constI64([1, 3])]), X, fill()]), g.constI64([2])], { keepdims: 0 }), // [B, L+1, d]
        () => g.op("ReduceMax", [X, g.constI64([2])], { keepdims: 0 }), // [B, L+1, d]
      ), [emptyDims[1]], [dims[1]]);
      const [gateReads, gateDen] = innerIf(wantGates, () => gateSums(toLayerMajor(g.op("MatMul", [X, gateWeights]))), [emptyDims[2], emptyDims[3]], [dims[2], dims[3]]); // Y [L+1, B, T, G+K]
      return [pooled, max, gateReads, gateDen, ...mhaSummaries(X)].map((name, i) => ({ name, type: "float32" as const, dims: dims[i] }));
    });
    const perLayer = g.subgraph(g.fresh("summaries_per_layer"), () => {
      const [pooled] = innerIf(wantPooled, () => {
        // each row alone (M = 1): MLAS multiplies a single row by x_l where it lies, and packs x_l first for [2, T] · x_l
        const rows = g.op("Unsqueeze", [g.op("Transpose", [poolRows()], { perm: [1, 0, 2] }), g.constI64([2])]); // [2, B, 1, T]
        const reads = g.op("Concat", taps.map((t) => g.op("MatMul", [rows, t])), { axis: 2 }); // each [2, B, 1, d] → [2, B, L+1, d]
        return [g.op("Transpose", [reads], { perm: [1, 2, 0, 3] })]; // [B, L+1, 2, d]
      }, [emptyDims[0]], [dims[0]]);
      const [max] = innerIf(wantMax, () => maxBranches(
        (valid) => {
          const v3 = g.op("Unsqueeze", [valid, g.constI64([2])]); // bool [B, T, 1]
          return g.op("Concat", taps.map((t) => g.op("ReduceMax", [g.op("Where", [v3, t, fill()]), g.constI64([1])], { keepdims: 1 })), { axis: 1 }); // [B, L+1, d]
        },
        () => g.op("Concat", taps.map((t) => g.op("ReduceMax", [t, g.constI64([1])], { keepdims: 1 })), { axis: 1 }), // [B, L+1, d]
      ), [emptyDims[1]], [dims[1]]);
      const [gateReads, gateDen] = innerIf(wantGates, () => {
        // one product per layer where its taps lie; the small [T, G+K] steps after it run once over every layer
        const ws = g.node("Split", [gateWeights], L1, { axis: 0, num_outputs: L1 }); // each [1, d, G+K]
        const ys = taps.map((t, l) => g.op("MatMul", [t, ws[l]])); // each [B, T, G+K]
        const byLayer = g.op("Concat", [g.constI64([L1]), g.op("Shape", [ys[0]])], { axis: 0 }); // [4]: L+1, B, T, G+K
        return gateSums(g.op("Reshape", [g.op("Concat", ys, { axis: 0 }), byLayer])); // Y [L+1, B, T, G+K]
      }, [emptyDims[2], emptyDims[3]], [dims[2], dims[3]]);
      // MHA's projections and attention read every layer's tokens in one product: a stack of every layer at any length
      const mha = innerIf(g.op("Or", [wantProj, wantAttn]), () => mhaSummaries(stackAll()), [emptyDims[4], emptyDims[5]], [dims[4], dims[5]]);
      return [pooled, max, gateReads, gateDen, ...mha].map((name, i) => ({ name, type: "float32" as const, dims: dims[i] }));
    });
    return g.node("If", [overStack], 6, { then_branch: stacked, else_branch: perLayer });

  }, emptyDims, dims);
}

/**
 * Additive attention bias [B, 1, T, past+T]: 0 where key column s may be seen by query t of sequence b (s ≤ past
 * + t, i.e. any past column or a new one up to t, and attention_mask[b, s] is 1), -inf elsewhere.
 */
function causalMaskBias(g: OnnxModelBuilder, attentionMask: string, pastLen: string, totalLen64: string): string {
  const zero = g.constI64([0], []);
  const one = g.constI64([1], []);
  const scalar = (x: string) => g.op("Squeeze", [x, g.constI64([0])]); // [1] → []
  const queryPos = g.op("Range", [scalar(pastLen), scalar(totalLen64), one]); // [T] = past .. past+T-1
  const keyPos = g.op("Range", [zero, scalar(totalLen64), one]); // [S] = 0 .. past+T-1
  const causal = g.op("LessOrEqual", [g.op("Unsqueeze", [keyPos, g.constI64([0])]), g.op("Unsqueeze", [queryPos, g.constI64([1])])]); // [T, S]
  const keyValid = g.op("Unsqueeze", [g.op("Equal", [attentionMask, one]), g.constI64([1, 2])]); // [B, 1, 1, S]
  const allowed = g.op("And", [causal, keyValid]); // [B, 1, T, S]
  return g.op("Where", [allowed, g.constF32([0], []), g.constF32([-Infinity], [])]); // [B, 1, T, S]
}

/**
 * Indices [B, kvH, T, hd] into GroupQueryAttention's present [B, kvH, S, hd] of this run's rows: sequence b's
 * row t sits at seqlens_k[b] + 1 - T + t (right after its own past, wherever the other sequences end).
 */
function newRowIndices(g: OnnxModelBuilder, seqlensK64: string, runLen: string, KV: number, hd: number): string {
  const first = g.op("Add", [g.op("Sub", [seqlensK64, runLen]), g.constI64([1], [])]); // [B] = p_b
  const steps = g.op("Range", [g.constI64([0], []), g.op("Squeeze", [runLen, g.constI64([0])]), g.constI64([1], [])]); // [T]
  const pos = g.op("Add", [g.op("Unsqueeze", [first, g.constI64([1, 2, 3])]), g.op("Unsqueeze", [steps, g.constI64([0, 1, 3])])]); // [B, 1, T, 1]
  return g.op("Expand", [pos, g.constI64([1, KV, 1, hd])]); // [B, kvH, T, hd]
}

/**
 * Grouped-query attention with a KV cache from plain ONNX ops (for head sizes the contrib kernel rejects).
 * q [B, T, H*hd], k/v [B, T, KV*hd] (RoPE applied) → [B, T, H*hd]; writes present (past ++ new) and new rows.
 * pastLen [1] int64: how many leading rows of the fed past buffers are real.
 */
function plainAttention(
  g: OnnxModelBuilder,
  [q, k, v]: string[],
  past: { key: string; value: string },
  pastLen: string,
  present: { key: string; value: string },
  newNames: [string, string],
  bias: string,
  { H, KV, hd }: { H: number; KV: number; hd: number },
): string {
  const heads = (x: string, n: number) => g.op("Transpose", [g.op("Reshape", [x, g.constI64([0, 0, n, hd])])], { perm: [0, 2, 1, 3] }); // [B, n, T, hd]
  const kNew = g.node("Identity", [heads(k, KV)], [newNames[0]])[0]; // [B, KV, T, hd]
  const vNew = g.node("Identity", [heads(v, KV)], [newNames[1]])[0]; // [B, KV, T, hd]
  // the session may feed a cache buffer longer than the past (stale rows after it): keep the first past rows;
  // rows of a shorter sequence beyond its own past are masked out by `bias`
  const valid = (x: string) => g.op("Slice", [x, g.constI64([0]), pastLen, g.constI64([2])]); // [B, KV, past, hd]
  const kAll = g.node("Concat", [valid(past.key), kNew], [present.key], { axis: 2 })[0]; // [B, KV, S, hd]
  const vAll = g.node("Concat", [valid(past.value), vNew], [present.value], { axis: 2 })[0]; // [B, KV, S, hd]
  // each KV head serves H/KV query heads: [B, KV, S, hd] → [B, KV, H/KV, S, hd] → [B, H, S, hd]
  const repeat = (x: string) =>
    g.op("Reshape", [g.op("Expand", [g.op("Unsqueeze", [x, g.constI64([2])]), g.constI64([1, KV, H / KV, 1, 1])]), g.constI64([0, H, -1, hd])]);
  const scores = g.op("MatMul", [heads(q, H), g.op("Transpose", [repeat(kAll)], { perm: [0, 1, 3, 2] })]); // [B, H, T, S]
  const scaled = g.op("Add", [g.op("Mul", [scores, g.constF32([1 / Math.sqrt(hd)], [])]), bias]); // [B, H, T, S]
  const context = g.op("MatMul", [g.op("Softmax", [scaled], { axis: -1 }), repeat(vAll)]); // [B, H, T, hd]
  return g.op("Reshape", [g.op("Transpose", [context], { perm: [0, 2, 1, 3] }), g.constI64([0, 0, H * hd])]); // [B, T, H*hd]
}

/**
 * Token embedding lookup: GatherBlockQuantized straight from 4-bit blocks when the source stores them (a
 * 151,936 × 896 table is 68 MiB instead of 544 MiB as float32), else Gather over float32.
 */
function embedding(g: OnnxModelBuilder, weights: WeightSource, inputIds: string, V: number, d: number, useInt4: boolean): string {
  const blocks = useInt4 && d % 32 === 0 ? weights.readInt4?.(TensorNames.tokenEmbedding) : undefined;
  if (blocks !== undefined) {
    const nBlocks = d / 32;
    const inputs = [
      g.initializer("token_embd.q4", "uint8", [V, d / 2], blocks.data), // [V, d/2] two 4-bit codes per byte
      inputIds,
      g.initializer("token_embd.scales", "float32", [V, nBlocks], blocks.scales), // [V, d/32]
    ];
    if (blocks.zeroPoints !== undefined) {
      inputs.push(g.initializer("token_embd.zero_points", "uint8", [V, Math.ceil(nBlocks / 2)], blocks.zeroPoints)); // [V, ceil(d/64)]
    }
    return g.op("GatherBlockQuantized", inputs, { gather_axis: 0, quantize_axis: 1, block_size: 32, bits: 4 }, MS_DOMAIN); // [B, T, d]
  }
  const table = g.initializer(TensorNames.tokenEmbedding, "float32", [V, d], weights.readF32(TensorNames.tokenEmbedding)); // [V, d]
  return g.op("Gather", [table, inputIds], { axis: 0 }); // [B, T, d]
}

/** Row-concatenates int4 matrices sharing K (rows are independent in MatMulNBits' layout). */
function concatInt4(parts: Int4Blocks[]): Int4Blocks {
  if (parts.length === 1) return parts[0];
  const k = parts[0].k;
  for (const p of parts) if (p.k !== k) throw new GraphError(`cannot fuse int4 matrices with K ${p.k} and ${k}`);
  const n = parts.reduce((a, p) => a + p.n, 0);
  const zpRow = Math.ceil(Math.ceil(k / 32) / 2); // packed zero-point bytes per row
  const anyZp = parts.some((p) => p.zeroPoints !== undefined);
  const data = new Uint8Array(parts.reduce((a, p) => a + p.data.length, 0)); // [N, K/32, 16]
  const scales = new Float32Array(parts.reduce((a, p) => a + p.scales.length, 0)); // [N * K/32]
  const zeroPoints = anyZp ? new Uint8Array(n * zpRow) : undefined; // [N, ceil(K/64)]
  let od = 0;
  let os = 0;
  let oz = 0;
  for (const p of parts) {
    data.set(p.data, od);
    scales.set(p.scales, os);
    // a part without zero points uses the implicit 8 in both nibbles
    if (zeroPoints !== undefined) zeroPoints.set(p.zeroPoints ?? new Uint8Array(p.n * zpRow).fill(0x88), oz);
    od += p.data.length;
    os += p.scales.length;
    oz += p.n * zpRow;
  }
  return { n, k, blockSize: 32, data, scales, zeroPoints };
}
