/**
 * The probe family as one two-stage template: token aggregator per layer → layer aggregator → linear head.
 * Kinds: pooling (mean|max), scoring (attention gate), mha (downcast multi-head attention), fixed (one layer ×
 * last|mean|max token; "final layer, last token" is fixed with layer = L, token = last).
 */
import type { HiddenStates } from "../types/hidden.js";
import { InvalidArgumentError } from "../errors.js";
import { Tape, Tensor, type DType } from "../tensor/autograd.js";
import { makeBatch, type ProbeBatch } from "../tensor/batch.js";
import { FixedAggregator, type FixedToken } from "./aggregators/fixed.js";
import { MhaAggregator } from "./aggregators/mha.js";
import { PoolingAggregator, type PoolKind } from "./aggregators/pooling.js";
import { ScoringAggregator } from "./aggregators/scoring.js";
import type { Aggregator } from "./aggregators/types.js";
import { newParam } from "../tensor/params.js";
import { Rng } from "../numeric/rng.js";

export type ProbeKind = "pooling" | "scoring" | "mha" | "fixed";

/** The architecture of a probe (hyper-parameters that change its shape). */
export interface ProbeConfig {
  kind: ProbeKind;
  /** pooling and mha: how to pool over the sequence. Default mean. */
  pool?: PoolKind;
  /** mha: heads H. Default 8. */
  heads?: number;
  /** mha: downcast factor f (Q/K/V width d/f). Default 8. */
  downcast?: number;
  /** fixed: layer index in 0..L (default L, the final layer). */
  layer?: number;
  /** fixed: which token (default last). */
  token?: FixedToken;
  /**
   * Inputs standardised per layer and dimension with statistics of the training set (saved with the probe as
   * `norm.mean` / `norm.std`). The residual stream's scale grows with depth (2 → 15 RMS across stories260K's
   * layers), so one learning rate cannot suit every layer without it.
   */
  standardize?: boolean;
}

/** Per-layer, per-dimension input statistics of a standardised probe. */
export interface InputNorm {
  /** [L+1, d] */
  mean: Float32Array;
  /** [L+1, d] (floored, never 0) */
  std: Float32Array;
}

/**
 * A standardised probe's μ and σ [L+1, d], checked for the inference paths that fold them into weights or
 * through a max (finite, σ > 0); undefined when the probe reads raw states.
 */
export function checkedInputNorm(probe: Probe): InputNorm | undefined {
  if (probe.config.standardize !== true) return undefined;
  if (probe.norm === undefined) throw new InvalidArgumentError("standardised probe has no input statistics (norm.mean/norm.std)", { field: "norm" });
  const { layers: L1, dim: d } = probe.shape;
  const { mean, std } = probe.norm;
  if (mean.length !== L1 * d || std.length !== L1 * d) throw new InvalidArgumentError(`input statistics have ${mean.length} values, expected [${L1}, ${d}]`, { field: "norm" });
  if (std.some((v) => !(v > 0) || !Number.isFinite(v)) || mean.some((v) => !Number.isFinite(v))) {
    throw new InvalidArgumentError("input statistics must be finite with std > 0", { field: "norm.std" });
  }
  return probe.norm;
}

/**
 * A per-layer linear map W [L+1, d, n] of standardised inputs, moved onto raw ones:
 * ((x − μ_l)/σ_l) · W_l = x · (W_l/σ_l) − (μ_l/σ_l) · W_l. Returns the folded weights [L+1, d, n] and the biases
 * [L+1, n] (summed in float64).
 */
export function foldInputNorm(W: ArrayLike<number>, norm: InputNorm, L1: number, d: number, n: number): { weights: Float32Array; bias: Float32Array } {
  const weights = new Float32Array(L1 * d * n); // [L+1, d, n]
  const bias = new Float32Array(L1 * n); // [L+1, n]
  for (let l = 0; l < L1; l++) {
    const acc = new Float64Array(n);
    for (let j = 0; j < d; j++) {
      const sd = norm.std[l * d + j], mu = norm.mean[l * d + j];
      const row = (l * d + j) * n;
      for (let c = 0; c < n; c++) {
        weights[row + c] = W[row + c] / sd;
        acc[c] -= (mu / sd) * W[row + c];
      }
    }
    bias.set(acc, l * n);
  }
  return { weights, bias };
}

/**
 * Mean and standard deviation [L+1, d] over the real tokens of (at most `maxExamples`, evenly spaced)
 * examples. Float64 sums: a few hundred thousand tokens would lose digits in float32.
 */
export function inputStatistics(get: (i: number) => HiddenStates, size: number, maxExamples = 2000): InputNorm {
  if (size < 1) throw new InvalidArgumentError("no examples to compute input statistics from", { field: "train" });
  const first = get(0);
  const L1 = first.layers, d = first.dim;
  const sum = new Float64Array(L1 * d), sq = new Float64Array(L1 * d); // [L+1, d]
  let tokens = 0;
  const n = Math.min(size, maxExamples);
  for (let k = 0; k < n; k++) {
    const h = get(Math.floor((k * size) / n));
    for (let l = 0; l < L1; l++) {
      const x = h.layer(l); // [T, d]
      for (let t = 0; t < h.tokens; t++) {
        for (let j = 0; j < d; j++) {
          const v = x[t * d + j];
          sum[l * d + j] += v;
          sq[l * d + j] += v * v;
        }
      }
    }
    tokens += h.tokens;
  }
  const mean = new Float32Array(L1 * d), std = new Float32Array(L1 * d); // [L+1, d]
  for (let k = 0; k < L1 * d; k++) {
    const m = sum[k] / tokens;
    mean[k] = m;
    std[k] = Math.sqrt(Math.max(sq[k] / tokens - m * m, 0)) + 1e-6;
  }
  return { mean, std };
}

/** What Probe.run takes: hidden states of B prompts (or their padded batch), or aggregated vectors [B, d]. */
export type ProbeInput = readonly HiddenStates[] | ProbeBatch | { aggregated: Float32Array };

/** What Probe.run returns for a batch of B prompts. */
export interface ProbeOutput {
  /** [B, C] class probabilities (softmax of the logits) */
  probabilities: Float32Array;
  /** [B, L+1] layer-gate weights (softmax over layers), for kinds that have a gate (scoring) */
  layerWeights?: Float32Array;
}

/** Model side of a probe: L+1 hidden-state layers of width d, C classes. */
export interface ProbeShape {
  /** L + 1 */
  layers: number;
  dim: number;
  classes: number;
}

export class Probe {
  readonly aggregator: Aggregator;
  /** [d, C] */
  readonly headWeight: Tensor;
  /** [C] */
  readonly headBias: Tensor;
  /** Input standardisation (config.standardize): set by training, saved and loaded with the weights. */
  norm?: InputNorm;

  constructor(
    readonly config: ProbeConfig,
    readonly shape: ProbeShape,
    options: { seed?: number; dtype?: DType } = {},
  ) {
    const dtype = options.dtype ?? "f32";
    const rng = new Rng(options.seed ?? 0);
    const { layers, dim, classes } = shape;
    if (!(layers >= 1 && dim >= 1 && classes >= 2)) {
      throw new InvalidArgumentError(`probe needs layers ≥ 1, dim ≥ 1, classes ≥ 2 (got ${layers}, ${dim}, ${classes})`, { field: "shape" });
    }
    switch (config.kind) {
      case "pooling":
        this.aggregator = new PoolingAggregator(config.pool ?? "mean");
        break;
      case "scoring":
        this.aggregator = new ScoringAggregator(layers, dim, dtype);
        break;
      case "mha":
        this.aggregator = new MhaAggregator(layers, dim, config.heads ?? 8, config.downcast ?? 8, config.pool ?? "mean", dtype, rng);
        break;
      case "fixed":
        this.aggregator = new FixedAggregator(config.layer ?? layers - 1, config.token ?? "last");
        break;
      default:
        throw new InvalidArgumentError(`unknown probe kind '${String((config as ProbeConfig).kind)}'`, { field: "kind" });
    }
    this.headWeight = newParam("head.weight", [dim, classes], dtype);
    this.headBias = newParam("head.bias", [classes], dtype);
  }

  /** Every trainable tensor by name (aggregator first, then the head). */
  params(): Map<string, Tensor> {
    const m = new Map(this.aggregator.params());
    m.set(this.headWeight.name!, this.headWeight);
    m.set(this.headBias.name!, this.headBias);
    return m;
  }

  /**
   * Aggregator parameters — the number the paper's formulas give: pooling 0, scoring (L+2)·d, mha (L+2)·4·d·(d/f).
   * With `includeHead`, plus the head's d·C + C.
   */
  parameterCount(options: { includeHead?: boolean } = {}): number {
    const head = options.includeHead === true ? this.headWeight.size + this.headBias.size : 0;
    return this.aggregator.parameterCount() + head;
  }

  /** logits [B, C] (and the layer gate [B, L+1] where there is one). */
  async forward(tape: Tape, batch: ProbeBatch): Promise<{ logits: Tensor; layerWeights?: Tensor; v: Tensor }> {
    if (batch.layers !== this.shape.layers || batch.dim !== this.shape.dim) {
      throw new InvalidArgumentError(
        `hidden states have ${batch.layers} layers of width ${batch.dim}, the probe was built for ${this.shape.layers} × ${this.shape.dim}`,
        { field: "hidden" },
      );
    }
    const { v, layerWeights } = await this.aggregate(tape, batch);
    return { logits: await this.head(tape, v), layerWeights, v };
  }

  /** The aggregator's output on the (standardised) batch: v [B, d], and the layer gate where there is one. */
  async aggregate(tape: Tape, batch: ProbeBatch): Promise<{ v: Tensor; layerWeights?: Tensor }> {
    return this.aggregator.forward(tape, this.standardizeBatch(batch));
  }

  /**
   * x ← (x − mean_l) / std_l at real tokens, in place (padding stays 0, so masks and pooling are unchanged).
   * A batch is built per call, so changing it in place copies nothing.
   */
  standardizeBatch(batch: ProbeBatch): ProbeBatch {
    if (this.config.standardize !== true) return batch;
    if (this.norm === undefined) throw new InvalidArgumentError("standardised probe has no input statistics (norm.mean/norm.std)", { field: "norm" });
    const { mean, std } = this.norm;
    const { layers: L1, batch: B, tokens: T, dim: d, x } = batch;
    for (let l = 0; l < L1; l++) {
      for (let b = 0; b < B; b++) {
        const n = batch.lengths[b];
        for (let t = 0; t < n; t++) {
          const row = ((l * B + b) * T + t) * d;
          for (let j = 0; j < d; j++) x[row + j] = (x[row + j] - mean[l * d + j]) / std[l * d + j];
        }
      }
    }
    return batch;
  }

  /** logits [B, C] = v [B, d] · W + b */
  async head(tape: Tape, v: Tensor): Promise<Tensor> {
    return tape.add(await tape.matmul(v, this.headWeight), this.headBias);
  }

  /**
   * The one inference path (evaluation, reports, the live hook, predict* all call it): one batch through the
   * probe without gradients, then softmax. `input` is the hidden states of B prompts, or — for aggregators
   * without parameters (pooling, fixed), whose output training computes once — the aggregated vectors [B, d].
   */
  async run(input: ProbeInput): Promise<ProbeOutput> {
    const C = this.shape.classes;
    const tape = new Tape(this.dtype, false);
    let logits: Tensor; // [B, C]
    let gate: Tensor | undefined; // [B, L+1]
    if ("aggregated" in input) {
      const B = input.aggregated.length / this.shape.dim;
      logits = await this.head(tape, tape.constant([B, this.shape.dim], input.aggregated));
    } else {
      const batch = Array.isArray(input) ? makeBatch(input as readonly HiddenStates[], this.dtype) : (input as ProbeBatch);
      const out = await this.forward(tape, batch);
      logits = out.logits;
      gate = out.layerWeights;
    }
    const probabilities = softmaxRows(logits.data, C); // [B, C]
    return gate === undefined ? { probabilities } : { probabilities, layerWeights: Float32Array.from(gate.data) };
  }

  /** Class probabilities [N, C] for several prompts, `batchSize` at a time. */
  async predictBatch(hs: readonly HiddenStates[], batchSize = 16): Promise<Float32Array> {
    const C = this.shape.classes;
    const out = new Float32Array(hs.length * C); // [N, C]
    for (let s = 0; s < hs.length; s += batchSize) out.set((await this.run(hs.slice(s, s + batchSize))).probabilities, s * C);
    return out;
  }

  /** Class probabilities [C] for one prompt. */
  async predict(h: HiddenStates): Promise<Float32Array> {
    return (await this.run([h])).probabilities;
  }

  /** Layer-gate weights [L+1] (softmax over layers) for one prompt; undefined when the kind has no gate. */
  async layerWeights(h: HiddenStates): Promise<Float32Array | undefined> {
    return (await this.run([h])).layerWeights;
  }

  get dtype(): DType {
    return this.headWeight.data instanceof Float64Array ? "f64" : "f32";
  }
}

/** Row-wise softmax of [rows, C] logits. */
export function softmaxRows(logits: ArrayLike<number>, C: number): Float32Array {
  const out = new Float32Array(logits.length); // [rows, C]
  for (let r = 0; r < logits.length / C; r++) {
    let max = -Infinity;
    for (let j = 0; j < C; j++) max = Math.max(max, logits[r * C + j]);
    let sum = 0;
    for (let j = 0; j < C; j++) sum += Math.exp(logits[r * C + j] - max);
    for (let j = 0; j < C; j++) out[r * C + j] = Math.exp(logits[r * C + j] - max) / sum;
  }
  return out;
}
