/**
 * Compiled probes: a set of trained probes (pooling, scoring, MHA, fixed) turned into ONE ONNX inference graph
 * (no autograd) that runs in its own ORT session on the hidden-state tensor. One `run()` gives every probe's
 * class probabilities (and the scoring gate's layer weights). The maths is the training forward's
 * (aggregators/*.ts), op for op; test/probe-compiled.test.ts proves the two equal (≤ 1e-5) for every kind.
 *
 * On an engine with tap summaries (Engine.hasTapSummaries) the live prefill path no longer hands this graph the
 * stacked tensor: pooling, scoring and fixed probes are read from per-layer summaries the decoder graph computes,
 * MHA probes from per-token Q/K/V projections (ProjectedMha below), with the probes' weights fed to the decoder as
 * inputs, so the decoder graph depends on no probe and attaching one never builds or reloads it (probe/summary.ts).
 * This graph serves the stacked-tensor cases: engines without summaries, probe sets with mixed length cuts,
 * padded training-style batches, and MHA response probes.
 *
 * Why a session of its own rather than nodes appended to the decoder graph (bench/compiled-probes.ts, random
 * Qwen2.5-0.5B shape, 128-token prefill, 2-core EPYC at load average ~11): two runs gave own-session/appended
 * total ratios of 0.93, 0.82, 0.84, 0.91 and 1.09, 1.05, 0.98, 1.37 (pooling, scoring, MHA, 4 probes); with the
 * dense, folded graphs of standardised probes (load ~6) appended/own-session was 1.22, 1.15, 1.12, 1.02. No
 * difference the noise lets through, because the probes cost little next to the prefill and the taps leave ORT
 * as one buffer that is fed back here without a copy (ort.Tensor wraps the same Float32Array). That buffer is
 * onnxruntime-node's one copy of the output into JS (~5 ms for 11.5 MB, inside the prefill's time); handing the
 * decoder a pre-allocated output did not remove it (6.6 vs 6.0 ms in a micro-check). What decides is
 * attach/detach: an appended graph is a second decoder session per probe set (a reload and another copy of the
 * weights in memory), this one is a small graph built in milliseconds, never touching the decoder.
 *
 * Where an MHA set's time goes (ORT profile of the dense graph, random 0.5B shape, H 8, f 8, T 128, 2 threads,
 * loaded 2-core EPYC, per call): the Q/K projection MatMul ([25, 128, 896] · [25, 896, 224], 1.28 GFLOP) 17.4
 * of 31.3 ms kernel time (~75 GFLOP/s, MLAS's f32 rate on the cores it got), Q·Kᵀ with the scale fused 3.3,
 * Softmax 2.9, query-mean attention · x 2.9, ReduceMean 1.3, the projection's Transposes and Split 0.9. The
 * projection is the arithmetic floor of an exact f32 graph. Tried, not kept: Q and K projected transposed
 * (Wᵀ·xᵀ: head-major with no Transpose or Split, 1/√hd folded into W_q, K's bias dropped as softmax-invariant;
 * −10% kernel time) and one 2-D MatMul per layer with prepacked weights (−6%): both change MLAS's summation
 * order, and the sharpest equality case below (random unstandardised 0.5B weights, padded) went from 9.0e-6
 * to 1.06e-5 and 1.86e-5 against the training forward (this graph: 6.6e-6 from a float64 forward). One MatMul
 * for all of a set's token reads (pooling mean, scoring α, MHA attention · x: x read once): no gain, MLAS is
 * slow at 2–10 rows (pooling + scoring 2.6 → 3.0 ms, the 4-probe set 45 → 42 ms, within the noise).
 *
 * Graph inputs: hidden [L+1, B, T, d] float32 (padding positions may hold anything), and in the padded graph
 * mask [B, T] float32 (1 = real token, 0 = padding; right or left padding alike). Each set has a dense graph
 * (no mask, for one live prompt) and a padded one (built on first use). Outputs per probe i: probs_i [B, C],
 * and for scoring probes layer_weights_i [B, L+1].
 */
import { ProbeSetCache } from "./set-cache.js";
import "../util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import type { TensorProto, ValueInfoProto } from "onnx-buf";
import type { SummaryAttention, SummaryProjections } from "../types/summary.js";
import type { HiddenStates } from "../types/hidden.js";
import { GraphError, InvalidArgumentError } from "../errors.js";
import { float, float32Initializer, inMemoryModelBytes, nodeProto, valueInfo, type Attr } from "../onnx/proto.js";
import type { ProbeBatch } from "../tensor/batch.js";
import { probeThreads } from "../tensor/kernel.js";
import { FixedAggregator } from "./aggregators/fixed.js";
import { MhaAggregator } from "./aggregators/mha.js";
import { PoolingAggregator } from "./aggregators/pooling.js";
import { ScoringAggregator } from "./aggregators/scoring.js";
import { denseDesign } from "./logreg.js";
import { checkedInputNorm, foldInputNorm, type Probe } from "./probe.js";
import type { Tensor } from "../tensor/autograd.js";

/** What one compiled probe returns for a batch. */
export interface CompiledOutput {
  /** [B, C] class probabilities (softmax of the head's logits). */
  probabilities: Float32Array;
  /** [B, L+1] layer-gate weights (scoring probes only). */
  layerWeights?: Float32Array;
}

/** Larger than any hidden-state magnitude, finite (so masked max never meets −∞ − −∞ = NaN). */
const NEG_BIG = -3.0e38;
/** Additive bias for padding keys/tokens in a softmax: exp(s − 1e9) underflows to exactly 0 for |s| ≪ 1e9. */
const MASK_BIAS = 1e9;

/** A tiny graph writer over the repo's ONNX proto helpers: fresh names, nodes, float32 weights. */
class GraphWriter {
  readonly nodes: ReturnType<typeof nodeProto>[] = [];
  readonly initializers: TensorProto[] = [];
  private n = 0;
  op(op: string, inputs: string[], attrs: Record<string, Attr> = {}, out?: string): string {
    return this.opN(op, inputs, 1, attrs, out === undefined ? undefined : [out])[0];
  }
  /** A node with `count` outputs (Split). */
  opN(op: string, inputs: string[], count: number, attrs: Record<string, Attr> = {}, outs?: string[]): string[] {
    const names = outs ?? Array.from({ length: count }, (_, k) => `${op.toLowerCase()}_${this.n}_${k}`);
    this.n++;
    this.nodes.push(nodeProto(op, inputs, names, attrs));
    return names;
  }
  weight(name: string, dims: number[], data: ArrayLike<number>): string {
    this.initializers.push(float32Initializer(name, dims, data instanceof Float32Array ? data : Float32Array.from(data)));
    return name;
  }
  ints(values: number[]): string {
    const name = `i64_${this.n++}`;
    this.nodes.push(nodeProto("Constant", [], [name], { value_ints: values }));
    return name;
  }
  scalar(v: number): string {
    const name = `f32_${this.n++}`;
    this.nodes.push(nodeProto("Constant", [], [name], { value_float: float(v) }));
    return name;
  }
}

/**
 * Values every probe of a set may use, built once per graph. Two graphs per set: `padded` (mask input, every
 * token reduction masked) for batches, and dense (no mask: every token is real) for one live prompt, where the
 * masking ops would only multiply by 1 and add 0 over full-size tensors.
 */
interface Shared {
  x: string; // hidden [L+1, B, T, d]
  padded: boolean;
  mask: string; // [B, T] 1/0 (padded only)
  mask4: string; // [1, B, T, 1]
  valid4: string; // bool [1, B, T, 1]
  count3: string; // [1, B, 1] real tokens per prompt
  bias: string; // [B, T] 0 at real tokens, −1e9 at padding
}

function shared(g: GraphWriter, padded: boolean): Shared {
  if (!padded) return { x: "hidden", padded, mask: "", mask4: "", valid4: "", count3: "", bias: "" };
  const mask = "mask";
  const mask4 = g.op("Unsqueeze", [mask, g.ints([0, 3])]); // [1, B, T, 1]
  const valid4 = g.op("Cast", [mask4], { to: 9 }); // bool [1, B, T, 1]
  const count = g.op("ReduceSum", [mask, g.ints([1])], { keepdims: 1 }); // [B, 1]
  const count3 = g.op("Unsqueeze", [count, g.ints([0])]); // [1, B, 1]
  const bias = g.op("Mul", [g.op("Sub", [mask, g.scalar(1)]), g.scalar(MASK_BIAS)]); // [B, T]
  return { x: "hidden", padded, mask, mask4, valid4, count3, bias };
}

/** Mean or max over the token axis of x [G, B, T, w] → [G, B, w], padding left out (the tape's `pool` with a row mask). */
function tokenPool(g: GraphWriter, s: Shared, x: string, kind: "mean" | "max"): string {
  if (!s.padded) return g.op(kind === "mean" ? "ReduceMean" : "ReduceMax", [x, g.ints([2])], { keepdims: 0 }); // [G, B, w]
  if (kind === "mean") {
    const sum = g.op("ReduceSum", [g.op("Mul", [x, s.mask4]), g.ints([2])], { keepdims: 0 }); // [G, B, w]
    return g.op("Div", [sum, s.count3]); // [G, B, w]
  }
  return g.op("ReduceMax", [g.op("Where", [s.valid4, x, g.scalar(NEG_BIG)]), g.ints([2])], { keepdims: 0 }); // [G, B, w]
}

/** Stage 2 of pooling probes: the same pooling over the L+1 layer summaries: [L+1, B, d] → [B, d]. */
function poolLayers(g: GraphWriter, per: string, kind: "mean" | "max"): string {
  return g.op(kind === "mean" ? "ReduceMean" : "ReduceMax", [per, g.ints([0])], { keepdims: 0 }); // [B, d]
}

function data(t: Tensor): Float32Array {
  return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
}

/**
 * A standardised probe's statistics. Training reads (x − μ_l)/σ_l at every real token; that map is affine, so
 * the graph never builds the standardised [L+1, B, T, d] tensor (two full-size intermediates): it is applied
 * after a token mean/max or a gate's weighted sum ((x−μ)/σ commutes with both: the weights sum to 1, σ > 0),
 * or folded into the first linear map (w/σ and bias −w·μ/σ), with the folded weights computed once here.
 */
interface Norm {
  mean: Float32Array; // [L+1, d]
  std: Float32Array; // [L+1, d]
  /** (v − μ) / σ for v [L+1, B, d] or [L+1, B, n, d] (`rank` 3 or 4): on summaries, not on every token. */
  apply(v: string, rank: 3 | 4): string;
  /** (v − μ_l) / σ_l for one layer's vectors v [B, d]. */
  applyLayer(v: string, layer: number): string;
}

function normFor(g: GraphWriter, probe: Probe, p: string): Norm | undefined {
  // folding through a max and dividing the weights need σ > 0 (artifact.ts refuses other statistics on load)
  const checked = checkedInputNorm(probe);
  if (checked === undefined) return undefined;
  const { layers: L1, dim: d } = probe.shape;
  const { mean, std } = checked;
  const names = new Map<number, [string, string]>();
  return {
    mean,
    std,
    apply(v, rank) {
      let w = names.get(rank);
      if (w === undefined) {
        const dims = rank === 3 ? [L1, 1, d] : [L1, 1, 1, d];
        w = [g.weight(`${p}.norm.mean.r${rank}`, dims, mean), g.weight(`${p}.norm.std.r${rank}`, dims, std)];
        names.set(rank, w);
      }
      return g.op("Div", [g.op("Sub", [v, w[0]]), w[1]]); // same shape as v
    },
    applyLayer(v, layer) {
      const mu = g.weight(`${p}.norm.mean.l${layer}`, [1, d], mean.subarray(layer * d, (layer + 1) * d)); // [1, d]
      const sd = g.weight(`${p}.norm.std.l${layer}`, [1, d], std.subarray(layer * d, (layer + 1) * d)); // [1, d]
      return g.op("Div", [g.op("Sub", [v, mu]), sd]); // [B, d]
    },
  };
}

/**
 * x [L+1, B, T, d] · W_l [d, n] per layer, as the standardised input would give it: x · (W_l/σ_l) − (μ_l/σ_l) · W_l.
 * W is [L+1, d, n] row-major; returns [L+1, B·T, n] (one batched MatMul over the layers).
 */
function layerLinear(g: GraphWriter, s: Shared, norm: Norm | undefined, W: Float32Array, L1: number, d: number, n: number, name: string): string {
  const x = g.op("Reshape", [s.x, g.ints([L1, -1, d])]); // [L+1, B·T, d]
  if (norm === undefined) return g.op("MatMul", [x, g.weight(name, [L1, d, n], W)]); // [L+1, B·T, n]
  const { weights: folded, bias } = foldInputNorm(W, norm, L1, d, n); // [L+1, d, n], [L+1, n]
  const y = g.op("MatMul", [x, g.weight(name, [L1, d, n], folded)]); // [L+1, B·T, n]
  return g.op("Add", [y, g.weight(`${name}.bias`, [L1, 1, n], bias)]); // [L+1, B·T, n]
}

/** Aggregator → v [B, d] (and the layer gate [B, L+1] for scoring). `p` prefixes this probe's weight names. */
function aggregate(g: GraphWriter, s: Shared, probe: Probe, p: string): { v: string; gate?: string } {
  const { layers: L1, dim: d } = probe.shape;
  const agg = probe.aggregator;
  const norm = normFor(g, probe, p);
  if (agg instanceof PoolingAggregator) {
    let per = tokenPool(g, s, s.x, agg.pool); // [L+1, B, d]
    if (norm !== undefined) per = norm.apply(per, 3); // the mean/max of standardised tokens
    return { v: poolLayers(g, per, agg.pool) };
  }
  if (agg instanceof ScoringAggregator) {
    const flat = layerLinear(g, s, norm, data(agg.tokenGate), L1, d, 1, `${p}.token_gate`); // [L+1, B·T, 1]
    const shape3 = s.padded ? g.op("Shape", [s.mask]) : g.op("Shape", [s.x], { start: 1, end: 3 }); // [B, T]
    const scores = g.op("Tanh", [g.op("Reshape", [flat, g.op("Concat", [g.ints([L1]), shape3], { axis: 0 })])]); // [L+1, B, T]
    const alpha = g.op("Softmax", [s.padded ? g.op("Add", [scores, s.bias]) : scores], { axis: -1 }); // [L+1, B, T]
    let sums = g.op("MatMul", [g.op("Unsqueeze", [alpha, g.ints([2])]), s.x]); // [L+1, B, 1, d]
    if (norm !== undefined) sums = norm.apply(sums, 4); // α sums to 1 over the real tokens
    const byPrompt = g.op("Transpose", [g.op("Squeeze", [sums, g.ints([2])])], { perm: [1, 0, 2] }); // [B, L+1, d]
    const w2 = g.weight(`${p}.layer_gate`, [d, 1], data(agg.layerGate));
    const ls = g.op("Tanh", [g.op("Squeeze", [g.op("MatMul", [byPrompt, w2]), g.ints([2])])]); // [B, L+1]
    const beta = g.op("Softmax", [ls], { axis: -1 }); // [B, L+1]
    const v = g.op("Squeeze", [g.op("MatMul", [g.op("Unsqueeze", [beta, g.ints([1])]), byPrompt]), g.ints([1])]); // [B, d]
    return { v, gate: beta };
  }
  if (agg instanceof MhaAggregator) {
    const tokens = mhaBlock(g, s, agg, s.x, agg.tokenBlock, L1, `${p}.token`, norm); // [L+1, B, d]
    const byPrompt = g.op("Unsqueeze", [g.op("Transpose", [tokens], { perm: [1, 0, 2] }), g.ints([0])]); // [1, B, L+1, d]
    // stage 2 reads the layer summaries: never padded, never standardised
    const stage2: Shared = { ...s, x: byPrompt, padded: false };
    const out = mhaBlock(g, stage2, agg, byPrompt, agg.layerBlock, 1, `${p}.layer`, undefined); // [1, B, d]
    return { v: g.op("Squeeze", [out, g.ints([0])]) }; // [B, d]
  }
  if (agg instanceof FixedAggregator) {
    if (!(agg.layer >= 0 && agg.layer < L1)) throw new InvalidArgumentError(`fixed probe layer ${agg.layer} is outside 0..${L1 - 1}`, { field: "layer" });
    const xl = () => g.op("Gather", [s.x, g.op("Constant", [], { value_int: agg.layer })], { axis: 0 }); // [B, T, d]
    let v: string;
    if (agg.token === "max") {
      const x4 = g.op("Slice", [s.x, g.ints([agg.layer]), g.ints([agg.layer + 1]), g.ints([0])]); // [1, B, T, d]
      v = g.op("Squeeze", [tokenPool(g, s, x4, "max"), g.ints([0])]); // [B, d]
    } else if (agg.token === "mean") {
      v = s.padded
        ? g.op("Div", [g.op("ReduceSum", [g.op("Mul", [xl(), g.op("Unsqueeze", [s.mask, g.ints([2])])]), g.ints([1])], { keepdims: 0 }), g.op("Squeeze", [s.count3, g.ints([0])])]) // [B, d]
        : g.op("ReduceMean", [xl(), g.ints([1])], { keepdims: 0 }); // [B, d]
    } else if (s.padded) {
      // the last real token: the position where the running count of real tokens reaches the total
      const count = g.op("Squeeze", [s.count3, g.ints([0])]); // [B, 1]
      const running = g.op("CumSum", [s.mask, g.op("Constant", [], { value_int: 1 })]); // [B, T]
      const last = g.op("Mul", [g.op("Cast", [g.op("Equal", [running, count])], { to: 1 }), s.mask]); // [B, T] one-hot
      v = g.op("Squeeze", [g.op("MatMul", [g.op("Unsqueeze", [last, g.ints([1])]), xl()]), g.ints([1])]); // [B, d]
    } else {
      v = g.op("Gather", [xl(), g.op("Constant", [], { value_int: -1 })], { axis: 1 }); // [B, d]: every token real, the last is T−1
    }
    return { v: norm !== undefined ? norm.applyLayer(v, agg.layer) : v };
  }
  throw new InvalidArgumentError(`cannot compile a probe of kind '${probe.config.kind}'`, { field: "kind" });
}

/** Columns of W [G, d, n] side by side: [G, d, Σn] (one MatMul reads x once for all of them). */
function concatColumns(parts: Float32Array[], G: number, d: number, n: number): Float32Array {
  const out = new Float32Array(G * d * n * parts.length); // [G, d, parts·n]
  for (let r = 0; r < G * d; r++) parts.forEach((w, i) => out.set(w.subarray(r * n, (r + 1) * n), (r * parts.length + i) * n));
  return out;
}

/**
 * One downcast attention block (MhaAggregator.block): x [G, B, T, d] → [G, B, d]. Standardisation (stage 1)
 * is folded into the projections; H heads of width hd; padding keys masked when the graph is padded; pooled
 * mean|max over T.
 *
 * Mean pooling is linear in V, so mean_t(att_t · x W_v) = (mean_t att_t) · x · W_v: the query-mean attention
 * [G, B, H, T] reads x directly ([H, T]·[T, d]) and each head's W_v slice maps that H×d result, which skips
 * the T×d×(d/f) V projection (a third of the block's arithmetic). Q and K still come from one MatMul over
 * [W_q | W_k]. Max pooling needs every token's output: Q, K, V from one MatMul over [W_q | W_k | W_v].
 */
function mhaBlock(
  g: GraphWriter, s: Shared, agg: MhaAggregator, x: string,
  w: MhaAggregator["tokenBlock"], G: number, p: string, norm: Norm | undefined,
  /** Q, K, V already projected (standardisation folded in): [G, B·T, 3·d/f]; x then only gives [G, B, T] */
  pre?: string,
): string {
  const d = agg.dim, inner = agg.inner, H = agg.heads, hd = inner / H;
  const mean = agg.pool === "mean";
  const parts = mean && pre === undefined ? [data(w.q), data(w.k)] : [data(w.q), data(w.k), data(w.v)]; // [G, d, d/f] each
  const n = parts.length;
  const proj = pre ?? layerLinear(g, { ...s, x }, norm, concatColumns(parts, G, d, inner), G, d, n * inner, `${p}.${mean ? "qk" : "qkv"}`); // [G, B·T, n·d/f]
  // [G, B·T, n·d/f] → [G, B, T, n·H, hd] → [G, B, n·H, T, hd] → q, k(, v) [G, B, H, T, hd]
  const byHead = g.op("Transpose", [g.op("Reshape", [proj, g.op("Concat", [g.op("Shape", [x], { end: 3 }), g.ints([n * H, hd])], { axis: 0 })])], { perm: [0, 1, 3, 2, 4] });
  const heads = g.opN("Split", [byHead], n, { axis: 2, num_outputs: n }); // [G, B, H, T, hd] each
  const kT = g.op("Transpose", [heads[1]], { perm: [0, 1, 2, 4, 3] }); // [G, B, H, hd, T]
  let scores = g.op("Mul", [g.op("MatMul", [heads[0], kT]), g.scalar(1 / Math.sqrt(hd))]); // [G, B, H, T, T]
  if (s.padded) scores = g.op("Add", [scores, g.op("Unsqueeze", [s.bias, g.ints([0, 2, 3])])]); // + [1, B, 1, 1, T]
  const att = g.op("Softmax", [scores], { axis: -1 }); // [G, B, H, T(query), T(key)]
  if (mean) {
    let attMean: string; // [G, B, H, T(key)]: the attention averaged over the real queries
    if (s.padded) {
      const qmask = g.op("Unsqueeze", [s.mask, g.ints([0, 2, 4])]); // [1, B, 1, T, 1]
      const count = g.op("Unsqueeze", [s.count3, g.ints([3])]); // [1, B, 1, 1]
      attMean = g.op("Div", [g.op("ReduceSum", [g.op("Mul", [att, qmask]), g.ints([3])], { keepdims: 0 }), count]);
    } else {
      attMean = g.op("ReduceMean", [att, g.ints([3])], { keepdims: 0 });
    }
    if (pre !== undefined) {
      // V is there already: the query-mean attention reads it ([1, T]·[T, hd] per head)
      const ctxV = g.op("MatMul", [g.op("Unsqueeze", [attMean, g.ints([3])]), heads[2]]); // [G, B, H, 1, hd]
      const mergedV = g.op("Reshape", [ctxV, g.op("Concat", [g.op("Shape", [x], { end: 2 }), g.ints([inner])], { axis: 0 })]); // [G, B, d/f]
      return g.op("MatMul", [mergedV, g.weight(`${p}.o`, [G, inner, d], data(w.o))]); // [G, B, d]
    }
    let read = g.op("MatMul", [attMean, x]); // [G, B, H, d]: per head, the attention-weighted input
    // standardised: the weights sum to 1 over the real keys, so (Σ a x − μ)/σ is Σ a (x − μ)/σ
    if (norm !== undefined) read = norm.apply(read, 4);
    const wv = data(w.v); // [G, d, d/f] → per head [G, 1, H, d, hd]
    const vHeads = new Float32Array(G * H * d * hd);
    for (let gi = 0; gi < G; gi++) for (let h = 0; h < H; h++) for (let j = 0; j < d; j++) {
      vHeads.set(wv.subarray((gi * d + j) * inner + h * hd, (gi * d + j) * inner + (h + 1) * hd), ((gi * H + h) * d + j) * hd);
    }
    const ctx = g.op("MatMul", [g.op("Unsqueeze", [read, g.ints([3])]), g.weight(`${p}.v.heads`, [G, 1, H, d, hd], vHeads)]); // [G, B, H, 1, hd]
    const merged = g.op("Reshape", [ctx, g.op("Concat", [g.op("Shape", [x], { end: 2 }), g.ints([inner])], { axis: 0 })]); // [G, B, d/f]
    return g.op("MatMul", [merged, g.weight(`${p}.o`, [G, inner, d], data(w.o))]); // [G, B, d]
  }
  const ctx = g.op("MatMul", [att, heads[2]]); // [G, B, H, T, hd]
  const merged = g.op("Reshape", [g.op("Transpose", [ctx], { perm: [0, 1, 3, 2, 4] }), g.ints([0, 0, 0, inner])]); // [G, B, T, d/f]
  const out = g.op("MatMul", [merged, g.weight(`${p}.o`, [G, 1, inner, d], data(w.o))]); // [G, B, T, d]
  return tokenPool(g, s, out, "max"); // [G, B, d]
}

/**
 * ONNX model bytes computing every probe of `probes` from one hidden-state tensor (see the file comment).
 * `padded` (default true): the graph takes a mask [B, T]; false: every token is real (no mask input).
 */
export function compileProbeGraph(probes: readonly Probe[], options: { padded?: boolean } = {}): Uint8Array {
  if (probes.length === 0) throw new InvalidArgumentError("no probes to compile", { field: "probes" });
  const padded = options.padded ?? true;
  const { layers: L1, dim: d } = probes[0].shape;
  for (const pr of probes) {
    if (pr.shape.layers !== L1 || pr.shape.dim !== d) {
      throw new InvalidArgumentError(`probes of one compiled set must share L+1 and d: ${pr.shape.layers} × ${pr.shape.dim} vs ${L1} × ${d}`, { field: "probes" });
    }
  }
  const g = new GraphWriter();
  const s = shared(g, padded);
  const outputs = [];
  for (let i = 0; i < probes.length; i++) {
    const probe = probes[i];
    const C = probe.shape.classes;
    const { v, gate } = aggregate(g, s, probe, `p${i}`);
    const w = g.weight(`p${i}.head.weight`, [d, C], data(probe.headWeight));
    const b = g.weight(`p${i}.head.bias`, [C], data(probe.headBias));
    const logits = g.op("Add", [g.op("MatMul", [v, w]), b]); // [B, C]
    g.op("Softmax", [logits], { axis: -1 }, `probs_${i}`); // [B, C]
    outputs.push(valueInfo(`probs_${i}`, "float32", ["B", C]));
    if (gate !== undefined) {
      g.op("Identity", [gate], {}, `layer_weights_${i}`); // [B, L+1]
      outputs.push(valueInfo(`layer_weights_${i}`, "float32", ["B", L1]));
    }
  }
  const inputs = [valueInfo("hidden", "float32", [L1, "B", "T", d])];
  if (padded) inputs.push(valueInfo("mask", "float32", ["B", "T"]));
  return inMemoryModelBytes({ name: "onepass_probes", producer: "onepass-probe", opset: 18, nodes: g.nodes, initializers: g.initializers, inputs, outputs });
}

/**
 * A set of probes compiled into one ORT session. The probes' weights are copied in at compile time: compile
 * again after training them further.
 */
export class CompiledProbes {
  /** The padded graph's session (mask input), built on the first batch that has padding. */
  private paddedSession?: Promise<ort.InferenceSession>;

  private constructor(
    readonly probes: readonly Probe[],
    /** The dense graph's session: every token real (one live prompt). */
    private readonly dense: ort.InferenceSession,
    /** ORT output names per probe: probs, and the layer gate when there is one. */
    private readonly names: { probs: string; gate?: string }[],
    private readonly threads: number | undefined,
  ) {}

  private static async session(probes: readonly Probe[], padded: boolean, threads: number | undefined): Promise<ort.InferenceSession> {
    const bytes = compileProbeGraph(probes, { padded });
    try {
      return await ort.InferenceSession.create(bytes, {
        graphOptimizationLevel: "all",
        executionMode: "sequential",
        // without an MHA probe the graph is a few memory-bound passes over x: one thread, no worker to wake (in
        // situ after a 0.5B prefill on 2 loaded cores, scoring took 1.9 ms on one thread, 14 ms median on two)
        ...probeThreads(!probes.some((p) => p.aggregator instanceof MhaAggregator)),
        ...(threads !== undefined ? { intraOpNumThreads: threads } : {}),
      });
    } catch (e) {
      throw new GraphError(`ONNX Runtime cannot load the compiled probes: ${(e as Error).message}`, { field: "probes" }, { cause: e });
    }
  }

  static async create(probes: readonly Probe[], options: { threads?: number } = {}): Promise<CompiledProbes> {
    const dense = await CompiledProbes.session(probes, false, options.threads);
    const names = probes.map((p, i) => ({ probs: `probs_${i}`, ...(p.aggregator instanceof ScoringAggregator ? { gate: `layer_weights_${i}` } : {}) }));
    return new CompiledProbes(probes, dense, names, options.threads);
  }

  get layers(): number {
    return this.probes[0].shape.layers;
  }
  get dim(): number {
    return this.probes[0].shape.dim;
  }

  /**
   * Every probe on x [L+1, B, T, d] with mask [B, T] (1 = real token; undefined = all real). x is handed to ORT
   * as it is (no copy) when it is a Float32Array.
   */
  async run(x: ArrayLike<number>, B: number, T: number, mask?: Uint8Array): Promise<CompiledOutput[]> {
    const L1 = this.layers, d = this.dim;
    if (x.length !== L1 * B * T * d) {
      throw new InvalidArgumentError(`hidden states have ${x.length} values, the compiled probes expect [${L1}, ${B}, ${T}, ${d}]`, { field: "hidden" });
    }
    if (mask !== undefined && mask.length !== B * T) throw new InvalidArgumentError(`mask has ${mask.length} values, expected [${B}, ${T}]`, { field: "mask" });
    // a prompt without tokens has no mean, max or last token: the graphs would give NaN, 0.5 or an ORT error
    if (!(B >= 1 && T >= 1)) throw new InvalidArgumentError(`the compiled probes need at least one prompt of at least one token, got [${B}, ${T}]`, { field: "hidden" });
    if (mask !== undefined) {
      for (let b = 0; b < B; b++) {
        if (!mask.subarray(b * T, (b + 1) * T).some((v) => v !== 0)) throw new InvalidArgumentError(`prompt ${b} of the batch has no real token (its mask row is all 0)`, { field: "mask" });
      }
    }
    const xs = x instanceof Float32Array ? x : Float32Array.from(x);
    const hidden = new ort.Tensor("float32", xs, [L1, B, T, d]); // [L+1, B, T, d]
    let out: ort.InferenceSession.ReturnType;
    try {
      if (mask === undefined || mask.every((v) => v !== 0)) {
        out = await this.dense.run({ hidden });
      } else {
        const m = Float32Array.from(mask, (v) => (v !== 0 ? 1 : 0)); // [B, T]
        this.paddedSession ??= CompiledProbes.session(this.probes, true, this.threads);
        const session = await this.paddedSession.catch((e: unknown) => {
          this.paddedSession = undefined; // a later batch tries again
          throw e;
        });
        out = await session.run({ hidden, mask: new ort.Tensor("float32", m, [B, T]) }); // mask [B, T]
      }
    } catch (e) {
      if (e instanceof GraphError) throw e; // the padded graph did not load
      throw new GraphError(`compiled probes failed: ${(e as Error).message}`, { field: "probes" }, { cause: e });
    }
    return this.names.map(({ probs, gate }) => ({
      probabilities: out[probs].data as Float32Array, // [B, C]
      ...(gate !== undefined ? { layerWeights: out[gate].data as Float32Array } : {}), // [B, L+1]
    }));
  }

  /** Every probe on a padded training-style batch. */
  runBatch(b: ProbeBatch): Promise<CompiledOutput[]> {
    return this.run(b.x, b.batch, b.tokens, b.mask);
  }

  /** Every probe on one prompt's HiddenStates [L+1, T, d] (B = 1, no copy). */
  async runHidden(h: HiddenStates): Promise<CompiledOutput[]> {
    if (h.layers !== this.layers || h.dim !== this.dim) {
      throw new InvalidArgumentError(`hidden states are ${h.layers} × ${h.dim}, the compiled probes expect ${this.layers} × ${this.dim}`, { field: "hidden" });
    }
    return await this.run(h.data, 1, h.tokens);
  }

  async dispose(): Promise<void> {
    await this.dense.release();
    const padded = await this.paddedSession?.catch(() => undefined);
    await padded?.release();
  }
}

/** Compiled sets kept at once (each holds an ORT session with a copy of its probes' weights). */
const CACHE_SIZE = 8;
const compiledCache = new ProbeSetCache<Promise<CompiledProbes>>(CACHE_SIZE, (probes) => CompiledProbes.create(probes), (old) => void old.then((c) => c.dispose(), () => {}));

/**
 * The compiled session for this exact set of probe objects (in this order), compiled on first use and cached
 * (least recently used out): attaching a probe set to a running engine costs one small graph build, and never
 * touches the decoder.
 */
export function compiledProbesFor(probes: readonly Probe[]): Promise<CompiledProbes> {
  if (probes.length === 0) throw new InvalidArgumentError("no probes to compile", { field: "probes" });
  return compiledCache.get(probes);
}

/**
 * MHA probes from what the decoder graph computes of them, so that the [L+1, T, d] tensor never leaves ORT
 * (mhaSummaryRequest gives what to feed it; standardisation is folded into the fed weights as layerLinear folds it):
 *
 * - attention reads (graph/decoder.ts `tap_attn_out`, one run over the prompt, mean-pooled probes sharing a head
 *   width): per layer and head Σ_s ā_s x_s [d]; only V per head, W_o and the layer stage run here (`runAttended`);
 * - projections (`tap_proj_out`, any prompt, any MHA probe): each token's Q, K, V ([L+1, T, 3·d/f] per probe);
 *   the T×T attention, the pooling and the layer stage run here (`run`).
 *
 * Each in a small session of its own, built on first use.
 */
export class ProjectedMha {
  private projected?: Promise<ort.InferenceSession>;
  private attended?: Promise<ort.InferenceSession>;
  /** P: the projection columns the set reads (Σ 3·d/f over its probes). */
  readonly width: number;
  /** H: the heads of the attention reads (Σ heads over its probes), 0 when the set cannot use them. */
  readonly heads: number;

  private constructor(
    readonly probes: readonly Probe[],
    private readonly threads: number | undefined,
  ) {
    const { layers: L1, dim: d } = probes[0].shape;
    for (const probe of probes) {
      if (!(probe.aggregator instanceof MhaAggregator)) throw new InvalidArgumentError(`a ${probe.config.kind} probe is not an MHA probe`, { field: "kind" });
      if (probe.shape.layers !== L1 || probe.shape.dim !== d) throw new InvalidArgumentError(`probes of one set must share L+1 and d`, { field: "probes" });
    }
    const aggs = probes.map((p) => p.aggregator as MhaAggregator);
    this.width = aggs.reduce((a, agg) => a + 3 * agg.inner, 0);
    this.heads = attendable(aggs) ? aggs.reduce((a, agg) => a + agg.heads, 0) : 0;
  }

  static async create(probes: readonly Probe[], options: { threads?: number } = {}): Promise<ProjectedMha> {
    if (probes.length === 0) throw new InvalidArgumentError("no probes to compile", { field: "probes" });
    return new ProjectedMha(probes, options.threads);
  }

  private async open(bytes: Uint8Array): Promise<ort.InferenceSession> {
    try {
      return await ort.InferenceSession.create(bytes, {
        graphOptimizationLevel: "all",
        executionMode: "sequential",
        ...probeThreads(false),
        ...(this.threads !== undefined ? { intraOpNumThreads: this.threads } : {}),
      });
    } catch (e) {
      throw new GraphError(`ONNX Runtime cannot load the compiled MHA probes: ${(e as Error).message}`, { field: "probes" }, { cause: e });
    }
  }

  private async runGraph(session: Promise<ort.InferenceSession>, feeds: Record<string, ort.Tensor>): Promise<CompiledOutput[]> {
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await (await session).run(feeds);
    } catch (e) {
      if (e instanceof GraphError) throw e;
      throw new GraphError(`compiled MHA probes failed: ${(e as Error).message}`, { field: "probes" }, { cause: e });
    }
    return this.probes.map((_, i) => ({ probabilities: out[`probs_${i}`].data as Float32Array })); // [1, C]
  }

  /** Every probe's probabilities [1, C] from one prompt's projections [L+1, T, P] (no copy). */
  async run(proj: Float32Array, T: number): Promise<CompiledOutput[]> {
    const { layers: L1 } = this.probes[0].shape;
    const P = this.width;
    if (!(T >= 1) || proj.length !== L1 * T * P) throw new InvalidArgumentError(`projections have ${proj.length} values, expected [${L1}, ${T}, ${P}]`, { field: "summary.proj" });
    this.projected ??= this.open(projectedGraph(this.probes, P));
    return this.runGraph(this.projected, { proj: new ort.Tensor("float32", proj, [L1, 1, T, P]) }); // [L+1, 1, T, P]
  }

  /** Every probe's probabilities [1, C] from one prompt's attention reads [L+1, H, d] (TapSummary.attn; no copy). */
  async runAttended(reads: Float32Array): Promise<CompiledOutput[]> {
    const { layers: L1, dim: d } = this.probes[0].shape;
    const H = this.heads;
    if (H === 0) throw new InvalidArgumentError("these MHA probes cannot be read from attention reads (max pooling, or heads of different widths)", { field: "summary.attn" });
    if (reads.length !== L1 * H * d) throw new InvalidArgumentError(`attention reads have ${reads.length} values, expected [${L1}, ${H}, ${d}]`, { field: "summary.attn" });
    this.attended ??= this.open(attendedGraph(this.probes, H));
    return this.runGraph(this.attended, { reads: new ort.Tensor("float32", reads, [L1, 1, H, d]) }); // [L+1, 1, H, d]
  }

  async dispose(): Promise<void> {
    for (const s of [this.projected, this.attended]) if (s !== undefined) await (await s.catch(() => undefined))?.release();
  }
}

/** Whether the in-graph attention reads serve these MHA probes: mean pooling, one head width. */
function attendable(aggs: readonly MhaAggregator[]): boolean {
  const hd = aggs[0].inner / aggs[0].heads;
  return aggs.every((a) => a.pool === "mean" && a.inner / a.heads === hd);
}

/**
 * The stage after one probe's token stage, as output probs_i: per-layer summaries → layer block → head → softmax.
 * `tokens` is either the summaries [L+1, 1, d] or, `projected`, their layer-block Q, K, V [L+1, 1, 3·d/f].
 */
function layerStageAndHead(g: GraphWriter, s: Shared, probe: Probe, agg: MhaAggregator, tokens: string, i: number, projected = false): ValueInfoProto {
  const byPrompt = g.op("Unsqueeze", [g.op("Transpose", [tokens], { perm: [1, 0, 2] }), g.ints([0])]); // [1, 1, L+1, d or 3·d/f]
  const pre = projected ? g.op("Squeeze", [byPrompt, g.ints([0])]) : undefined; // [1, L+1, 3·d/f]
  const out = mhaBlock(g, { ...s, x: byPrompt }, agg, byPrompt, agg.layerBlock, 1, `p${i}.layer`, undefined, pre); // [1, 1, d]
  const v = g.op("Squeeze", [out, g.ints([0])]); // [1, d]
  const { dim: d, classes: C } = probe.shape;
  const logits = g.op("Add", [g.op("MatMul", [v, g.weight(`p${i}.head.weight`, [d, C], data(probe.headWeight))]), g.weight(`p${i}.head.bias`, [C], data(probe.headBias))]); // [1, C]
  g.op("Softmax", [logits], { axis: -1 }, `probs_${i}`); // [1, C]
  return valueInfo(`probs_${i}`, "float32", [1, C]);
}

const dense: Shared = { x: "", padded: false, mask: "", mask4: "", valid4: "", count3: "", bias: "" };

/** The projections' graph: proj [L+1, 1, T, P] → probs_i [1, C]. */
function projectedGraph(probes: readonly Probe[], P: number): Uint8Array {
  const { layers: L1 } = probes[0].shape;
  const g = new GraphWriter();
  const outputs: ValueInfoProto[] = [];
  let off = 0;
  probes.forEach((probe, i) => {
    const agg = probe.aggregator as MhaAggregator;
    const n = 3 * agg.inner;
    // this probe's columns of the projections [L+1, 1, T, P] → [L+1, 1, T, n]
    const mine = n === P ? "proj" : g.op("Slice", ["proj", g.ints([off]), g.ints([off + n]), g.ints([3])]);
    off += n;
    const pre = g.op("Reshape", [mine, g.ints([L1, -1, n])]); // [L+1, T, n]
    const tokens = mhaBlock(g, { ...dense, x: mine }, agg, mine, agg.tokenBlock, L1, `p${i}.token`, undefined, pre); // [L+1, 1, d]
    outputs.push(layerStageAndHead(g, dense, probe, agg, tokens, i));
  });
  return inMemoryModelBytes({ name: "onepass_projected_mha", producer: "onepass-probe", opset: 18, nodes: g.nodes, initializers: g.initializers, inputs: [valueInfo("proj", "float32", [L1, 1, "T", P])], outputs });
}

/**
 * The attention reads' graph: reads [L+1, 1, H, d] → probs_i [1, C]. Per head, V of the read (Σ_s ā_s x_s)·W_v + b_v
 * (the folded W_v: standardisation is affine and ā sums to 1), the heads joined, then W_o and the layer block's
 * [W'_q | W'_k | W'_v] as one product [d/f, 3·d/f] per layer: the layer block reads each layer's summary only through
 * those projections. The product is 3/f of W_o's size, and the graph's run is its weights coming from memory after a
 * prefill: 14 MB instead of 20 for the Qwen2.5-0.5B shape at f 8.
 */
function attendedGraph(probes: readonly Probe[], H: number): Uint8Array {
  const { layers: L1, dim: d } = probes[0].shape;
  const g = new GraphWriter();
  const outputs: ValueInfoProto[] = [];
  let h0 = 0;
  probes.forEach((probe, i) => {
    const agg = probe.aggregator as MhaAggregator;
    const Hi = agg.heads, inner = agg.inner, hd = inner / Hi, n = 3 * inner;
    const mine = Hi === H ? "reads" : g.op("Slice", ["reads", g.ints([h0]), g.ints([h0 + Hi]), g.ints([2])]); // [L+1, 1, Hi, d]
    h0 += Hi;
    const { w, b } = foldedProjection(probe, agg, L1, d); // [L+1, d, n], [L+1, n]: Q | K | V
    const wv = new Float32Array(L1 * Hi * d * hd); // [L+1, 1, Hi, d, hd]
    const bv = new Float32Array(L1 * Hi * hd); // [L+1, 1, Hi, 1, hd]
    for (let l = 0; l < L1; l++) for (let h = 0; h < Hi; h++) {
      const col = 2 * inner + h * hd;
      for (let j = 0; j < d; j++) wv.set(w.subarray((l * d + j) * n + col, (l * d + j) * n + col + hd), ((l * Hi + h) * d + j) * hd);
      bv.set(b.subarray(l * n + col, l * n + col + hd), (l * Hi + h) * hd);
    }
    const ctx = g.op("Add", [g.op("MatMul", [g.op("Unsqueeze", [mine, g.ints([3])]), g.weight(`p${i}.v.heads`, [L1, 1, Hi, d, hd], wv)]), g.weight(`p${i}.v.bias`, [L1, 1, Hi, 1, hd], bv)]); // [L+1, 1, Hi, 1, hd]
    const merged = g.op("Reshape", [ctx, g.ints([L1, 1, inner])]); // [L+1, 1, d/f]
    const layerQkv = concatColumns([data(agg.layerBlock.q), data(agg.layerBlock.k), data(agg.layerBlock.v)], 1, d, inner); // [1, d, 3·d/f]
    const product = new Float64Array(L1 * inner * 3 * inner); // [L+1 · d/f, 3·d/f] = W_o · [W'_q | W'_k | W'_v], rounded once
    denseDesign(data(agg.tokenBlock.o), L1 * inner, d).mul(Float64Array.from(layerQkv), 3 * inner, product);
    const wo = g.weight(`p${i}.o.layer_qkv`, [L1, inner, 3 * inner], Float32Array.from(product));
    const projected = g.op("MatMul", [merged, wo]); // [L+1, 1, 3·d/f]
    outputs.push(layerStageAndHead(g, dense, probe, agg, projected, i, true));
  });
  return inMemoryModelBytes({ name: "onepass_attended_mha", producer: "onepass-probe", opset: 18, nodes: g.nodes, initializers: g.initializers, inputs: [valueInfo("reads", "float32", [L1, 1, H, d])], outputs });
}

/**
 * What the decoder graph must compute for a set of MHA probes (types/summary.ts): `projections`, each probe's
 * folded [W_q | W_k | W_v] side by side, [L+1, d, P] with P = Σ 3·d/f, and the biases [L+1, P]; and when the set
 * can read them (mean pooling, one head width), `attention`: every probe's W_q/√hd, then every probe's W_k.
 */
export function mhaSummaryRequest(probes: readonly Probe[]): { projections: SummaryProjections; attention?: SummaryAttention } {
  const { layers: L1, dim: d } = probes[0].shape;
  const aggs = probes.map((p) => {
    if (!(p.aggregator instanceof MhaAggregator)) throw new InvalidArgumentError(`a ${p.config.kind} probe is not an MHA probe`, { field: "kind" });
    return p.aggregator;
  });
  const blocks = probes.map((p, i) => foldedProjection(p, aggs[i], L1, d));
  /** Columns [from, from + count) of every block (scaled by `scale[i]`) side by side: [L+1, d, W], [L+1, W]. */
  const gather = (part: (i: number) => { from: number; count: number; scale: number }) => {
    const W = probes.reduce((a, _, i) => a + part(i).count, 0);
    const weights = new Float32Array(L1 * d * W), bias = new Float32Array(L1 * W);
    let col = 0;
    blocks.forEach((blk, i) => {
      const { from, count, scale } = part(i);
      for (let r = 0; r < L1 * d; r++) for (let c = 0; c < count; c++) weights[r * W + col + c] = blk.w[r * blk.n + from + c] * scale;
      for (let l = 0; l < L1; l++) for (let c = 0; c < count; c++) bias[l * W + col + c] = blk.b[l * blk.n + from + c] * scale;
      col += count;
    });
    return { weights, bias, width: W };
  };
  const projections = gather((i) => ({ from: 0, count: blocks[i].n, scale: 1 }));
  if (!attendable(aggs)) return { projections };
  const hd = aggs[0].inner / aggs[0].heads;
  const q = gather((i) => ({ from: 0, count: aggs[i].inner, scale: 1 / Math.sqrt(hd) }));
  const k = gather((i) => ({ from: aggs[i].inner, count: aggs[i].inner, scale: 1 }));
  const A = 2 * q.width;
  const weights = new Float32Array(L1 * d * A), bias = new Float32Array(L1 * A); // [L+1, d, 2·H·hd], [L+1, 2·H·hd]
  for (let r = 0; r < L1 * d; r++) {
    weights.set(q.weights.subarray(r * q.width, (r + 1) * q.width), r * A);
    weights.set(k.weights.subarray(r * k.width, (r + 1) * k.width), r * A + q.width);
  }
  for (let l = 0; l < L1; l++) {
    bias.set(q.bias.subarray(l * q.width, (l + 1) * q.width), l * A);
    bias.set(k.bias.subarray(l * k.width, (l + 1) * k.width), l * A + q.width);
  }
  return { projections, attention: { weights, bias, heads: q.width / hd, headDim: hd } };
}

/** An MHA probe's stage-1 [W_q | W_k | W_v] [L+1, d, 3·d/f] with its standardisation folded in (W/σ, −(μ/σ)·W). */
function foldedProjection(probe: Probe, agg: MhaAggregator, L1: number, d: number): { w: Float32Array; b: Float32Array; n: number } {
  const t = agg.tokenBlock;
  const n = 3 * agg.inner;
  const W = concatColumns([data(t.q), data(t.k), data(t.v)], L1, d, agg.inner); // [L+1, d, n]
  const norm = checkedInputNorm(probe);
  if (norm === undefined) return { w: W, b: new Float32Array(L1 * n), n };
  const { weights, bias } = foldInputNorm(W, norm, L1, d, n); // [L+1, d, n], [L+1, n]
  return { w: weights, b: bias, n };
}

const projectedCache = new ProbeSetCache<Promise<ProjectedMha>>(CACHE_SIZE, (probes) => ProjectedMha.create(probes), (old) => void old.then((c) => c.dispose(), () => {}));

/** The ProjectedMha of this exact set of MHA probe objects (cached like compiledProbesFor). */
export function projectedMhaFor(probes: readonly Probe[]): Promise<ProjectedMha> {
  return projectedCache.get(probes);
}
