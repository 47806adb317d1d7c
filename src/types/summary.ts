/**
 * Per-layer token summaries of one sequence's run: what pooling, scoring and fixed-layer probes read from the
 * prompt's hidden states, computed inside the decoder graph so that the [L+1, T, d] tensor never leaves ORT
 * (graph/decoder.ts, `tapSummaries`). Every field is a partial aggregate that chunks of one prompt combine
 * exactly (`then`): sums and counts add, maxima take the larger, the last token is the later chunk's, and the
 * scoring gates' reads Σ e^{s_t} (x_t · r) and Σ e^{s_t} add (s_t = tanh(·) ∈ [−1, 1], so no running maximum is
 * needed for e^{s_t} to stay finite: an online softmax without rescaling).
 */
import { concatTokens } from "./hidden.js";

/**
 * Scoring gates fed to the graph: gate g's score of token t at layer l is s_t = tanh(x_t · weights[l, :, g] +
 * bias[l, g]), and the graph returns its softmax numerator Σ_t e^{s_t} x_t read along K directions r_lk =
 * weights[l, :, G + k] (each read weighted by the gate readOf[k]) with the denominator Σ_t e^{s_t}: a probe needs
 * the weighted token mean only through a few linear maps (its layer gate and its head), so the d-wide sums never
 * leave the graph.
 */
export interface SummaryGates {
  /** [L+1, d, G+K]: the G score vectors, then the K read vectors */
  weights: Float32Array;
  /** [L+1, G] */
  bias: Float32Array;
  /** G ≥ 1 */
  count: number;
  /** [K], K ≥ 1: the gate (0..G−1) whose softmax weights read column k */
  readOf: Int32Array;
}

/** Per-token linear maps fed to the graph: y_t = x_t · weights[l] + bias[l] per layer l (MHA probes' Q, K, V). */
export interface SummaryProjections {
  /** [L+1, d, P] */
  weights: Float32Array;
  /** [L+1, P] */
  bias: Float32Array;
  /** P ≥ 1 */
  width: number;
}

/**
 * MHA probes' token attention, computed in the graph when one run covers every summarised token (the T×T
 * attention needs them all): per layer and head h, the query-averaged attention over the keys
 * ā_h = (1/T) Σ_t softmax_s(q_t · k_s) and the read Σ_s ā_h,s x_s [d]. A mean-pooled MHA probe needs no more of
 * the tokens: mean_t Σ_s a_ts (x_s W_v + b_v) = (Σ_s ā_s x_s) W_v + b_v, since each row of a sums to 1.
 */
export interface SummaryAttention {
  /** [L+1, d, 2·H·hd]: every head's W_q (scaled by 1/√hd), then every head's W_k */
  weights: Float32Array;
  /** [L+1, 2·H·hd] */
  bias: Float32Array;
  /** H ≥ 1: heads of all the set's probes side by side */
  heads: number;
  /** hd ≥ 1: one head's width (the same for every probe of the set) */
  headDim: number;
}

/** What a run's summaries must hold. */
export interface SummaryRequest {
  /**
   * The masked sum and the last token of every layer (mean-pooled and fixed probes read them). Default true; false
   * skips them for sets that read neither (scoring, MHA): a pass over every layer's tokens less.
   */
  pooled?: boolean;
  /** The per-layer elementwise maximum over the run's tokens. */
  max?: boolean;
  /** Scoring gates (see SummaryGates). */
  gates?: SummaryGates;
  /** Per-token projections (see SummaryProjections): [L+1, T, P] per run, far narrower than the taps' d. */
  projections?: SummaryProjections;
  /**
   * In-graph attention reads (see SummaryAttention) instead of the projections, for a request summarised in one
   * run. `projections` must be given too: a request split over several runs (chunked or interleaved prefill) drops
   * this (`acrossRuns`) and reads the projections, which chunks combine.
   */
  attention?: SummaryAttention;
  /**
   * Summarise only the first `upTo` tokens of the call (a probe trained on a length cut): the prefill is split
   * there, the later tokens run without summaries. Default: all of them.
   */
  upTo?: number;
}

/** The request for one of several runs that summarise a prompt together: attention reads need one run (SummaryRequest.attention). */
export function acrossRuns(r: SummaryRequest): SummaryRequest {
  if (r.attention === undefined) return r;
  const { attention: _, ...rest } = r;
  return rest;
}

export class TapSummary {
  /**
   * @param layers L + 1
   * @param dim d
   * @param tokens real tokens summarised
   * @param sum [L+1, d] Σ_t x_t (float64: chunks add up without float32 rounding at each step), unless not asked (SummaryRequest.pooled)
   * @param last [L+1, d] the last real token's states (float32 values; float64 arrays keep the probes' reads monomorphic), with `sum`
   * @param max [L+1, d] elementwise max over the tokens, when asked
   * @param gates G when scoring gates were fed, else 0
   * @param gateReads [L+1, K] Σ_t e^{s_t} (x_t · r_lk), s_t the score of read k's gate (SummaryGates)
   * @param gateDen [L+1, G] Σ_t e^{s_t}
   */
  constructor(
    readonly layers: number,
    readonly dim: number,
    readonly tokens: number,
    readonly sum: Float64Array | undefined,
    readonly last: Float64Array | undefined,
    readonly max: Float64Array | undefined,
    readonly gates: number,
    readonly gateReads: Float64Array | undefined,
    readonly gateDen: Float64Array | undefined,
    /** [L+1, tokens, P] every token's projections, when asked (P = projWidth) */
    readonly proj?: Float32Array,
    readonly projWidth = 0,
    /** [L+1, H, d] the attention reads Σ_s ā_h,s x_s per layer and head, when asked (H = attnHeads; one run only) */
    readonly attn?: Float32Array,
    readonly attnHeads = 0,
  ) {
    const n = layers * dim;
    if ((sum === undefined) !== (last === undefined) || (sum !== undefined && sum.length !== n) || (last !== undefined && last.length !== n) || (max !== undefined && max.length !== n)) {
      throw new RangeError(`TapSummary: [${layers}, ${dim}] summaries have ${sum?.length}/${last?.length}/${max?.length} values`);
    }
    if (gates > 0 && (gateReads === undefined || gateReads.length === 0 || gateReads.length % layers !== 0 || gateDen?.length !== layers * gates)) {
      throw new RangeError(`TapSummary: ${gates} gates need [${layers}, K] reads and [${layers}, ${gates}] sums`);
    }
    if (projWidth > 0 && proj?.length !== layers * tokens * projWidth) {
      throw new RangeError(`TapSummary: projections of width ${projWidth} need [${layers}, ${tokens}, ${projWidth}] values`);
    }
    if (attnHeads > 0 && attn?.length !== layers * attnHeads * dim) {
      throw new RangeError(`TapSummary: attention reads of ${attnHeads} heads need [${layers}, ${attnHeads}, ${dim}] values`);
    }
  }

  /** The summary of this run followed by `next` (the same sequence's following tokens). */
  then(next: TapSummary): TapSummary {
    if (next.layers !== this.layers || next.dim !== this.dim || next.gates !== this.gates || next.gateReads?.length !== this.gateReads?.length || next.projWidth !== this.projWidth || (next.max === undefined) !== (this.max === undefined) || (next.sum === undefined) !== (this.sum === undefined)) {
      throw new RangeError("TapSummary.then: summaries of different shapes or contents");
    }
    if (this.attnHeads > 0 || next.attnHeads > 0) throw new RangeError("TapSummary.then: attention reads cover one whole run and do not combine (see acrossRuns)");
    if (next.tokens === 0) return this;
    if (this.tokens === 0) return next;
    const add = (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]);
    return new TapSummary(
      this.layers, this.dim, this.tokens + next.tokens,
      this.sum === undefined ? undefined : add(this.sum, next.sum!),
      next.last,
      this.max === undefined ? undefined : this.max.map((v, i) => Math.max(v, next.max![i])),
      this.gates,
      this.gateReads === undefined ? undefined : add(this.gateReads, next.gateReads!),
      this.gateDen === undefined ? undefined : add(this.gateDen, next.gateDen!),
      this.projWidth > 0 ? concatTokens([{ data: this.proj!, tokens: this.tokens }, { data: next.proj!, tokens: next.tokens }], this.layers, this.projWidth) : undefined, // [L+1, Ta+Tb, P]
      this.projWidth,
    );
  }
}
