/**
 * Probes read from the decoder graph's per-layer token summaries (types/summary.ts, graph/decoder.ts
 * `tapSummaries`) instead of the whole [L+1, T, d] hidden-state tensor: the live prefill path for pooling,
 * scoring and fixed probes. What each kind needs:
 *
 *   pooling mean / fixed mean: the masked sum and the token count; pooling max / fixed max: the max;
 *   fixed last: the last token; scoring: its token gate's Σ e^{s_t} x_t and Σ e^{s_t} per layer, s_t the gate's
 *   score, with the gate vectors fed to the graph as inputs (folded with the probe's standardisation here).
 *
 * The rest of each probe — standardisation (affine, so it commutes with a mean, a max (σ > 0) and a weighted sum
 * whose weights sum to 1), the layer stage, the head and its softmax — is O((L+1)·d) and runs here in float64.
 * test/probe-summary.test.ts proves the result equal to the training forward (≤ 1e-5) for every kind.
 * MHA probes read every token against every other. When one run covers the prompt and the probes pool with the
 * mean, the graph computes the T×T attention itself and gives per layer and head the attention-weighted read of
 * the tokens ([L+1, H, d]); otherwise each token's Q, K, V projections ([L+1, T, 3·d/f]), which chunks join. The
 * probes' folded weights are fed as inputs; the rest runs in a small compiled session (compiled.ts ProjectedMha).
 */
import { ProbeSetCache } from "./set-cache.js";
import { InvalidArgumentError } from "../errors.js";
import type { SummaryGates, SummaryRequest, TapSummary } from "../types/summary.js";
import { FixedAggregator } from "./aggregators/fixed.js";
import { PoolingAggregator } from "./aggregators/pooling.js";
import { ScoringAggregator } from "./aggregators/scoring.js";
import { MhaAggregator } from "./aggregators/mha.js";
import { mhaSummaryRequest, projectedMhaFor, type CompiledOutput } from "./compiled.js";
import { checkedInputNorm, foldInputNorm, type Probe } from "./probe.js";

/** Whether `probe` can be read from token summaries (pooling, scoring, fixed; MHA through its projections). */
export function readsSummaries(probe: Probe): boolean {
  const a = probe.aggregator;
  return a instanceof PoolingAggregator || a instanceof ScoringAggregator || a instanceof FixedAggregator || a instanceof MhaAggregator;
}

/**
 * What a set of probes reads from the summaries: the request to hand the engine (ForwardOptions.summary /
 * GenerateOptions.summary) and the maths that turns a TapSummary into every probe's class probabilities. Built
 * once per probe set (the gate vectors are folded here); the probes' weights are read at construction.
 */
export class SummaryProbes {
  /** Pass to the engine's prefill. */
  readonly request: SummaryRequest;
  /** Gate index of each scoring probe (−1 for the others). */
  private readonly gateOf: number[];

  constructor(readonly probes: readonly Probe[]) {
    if (probes.length === 0) throw new InvalidArgumentError("no probes given", { field: "probes" });
    const { layers: L1, dim: d } = probes[0].shape;
    for (const p of probes) {
      if (!readsSummaries(p)) throw new InvalidArgumentError(`a ${p.config.kind} probe cannot be read from token summaries`, { field: "kind" });
      if (p.shape.layers !== L1 || p.shape.dim !== d) throw new InvalidArgumentError(`probes of one set must share L+1 and d: ${p.shape.layers} × ${p.shape.dim} vs ${L1} × ${d}`, { field: "probes" });
      const a = p.aggregator;
      if (a instanceof FixedAggregator && !(a.layer >= 0 && a.layer < L1)) throw new InvalidArgumentError(`fixed probe layer ${a.layer} is outside 0..${L1 - 1}`, { field: "layer" });
    }
    // checked once here (bad statistics are refused now, not per request), read per request; an unstandardised
    // probe gets μ 0 and 1/σ 1, which leave every value exactly as it is
    this.norms = probes.map((p) => {
      const n = checkedInputNorm(p);
      return n === undefined ? { mean: new Float64Array(L1 * d), inv: new Float64Array(L1 * d).fill(1) } : { mean: Float64Array.from(n.mean), inv: Float64Array.from(n.std, (v) => 1 / v) };
    });
    this.layerGates = probes.map((p, i) => (p.aggregator instanceof ScoringAggregator ? foldLayerGate(p, p.aggregator, this.norms[i]) : undefined));
    const scoring = probes.filter((p) => p.aggregator instanceof ScoringAggregator);
    let g = 0;
    this.gateOf = probes.map((p) => (p.aggregator instanceof ScoringAggregator ? g++ : -1));
    const max = probes.some((p) => {
      const a = p.aggregator;
      return (a instanceof PoolingAggregator && a.pool === "max") || (a instanceof FixedAggregator && a.token === "max");
    });
    this.mha = probes.filter((p) => p.aggregator instanceof MhaAggregator);
    // the sum and last token: mean pooling and fixed probes of the mean or last token
    const pooled = probes.some((p) => {
      const a = p.aggregator;
      return (a instanceof PoolingAggregator && a.pool === "mean") || (a instanceof FixedAggregator && a.token !== "max");
    });
    this.request = {
      ...(pooled ? {} : { pooled: false }),
      ...(max ? { max: true } : {}),
      ...(scoring.length > 0 ? { gates: foldGates(scoring, L1, d) } : {}),
      ...(this.mha.length > 0 ? mhaSummaryRequest(this.mha) : {}),
    };
  }

  /** The MHA probes of the set (read from the projections). */
  private readonly mha: Probe[];
  /** Each probe's μ and 1/σ [L+1, d] (0 and 1 when unstandardised). */
  private readonly norms: Norm[];
  /** Each scoring probe's layer stage folded with its standardisation (undefined for the other kinds). */
  private readonly layerGates: (FoldedLayerGate | undefined)[];

  get layers(): number {
    return this.probes[0].shape.layers;
  }
  get dim(): number {
    return this.probes[0].shape.dim;
  }

  /** Every probe's class probabilities [1, C] (and a scoring probe's layer weights [1, L+1]) from one prompt's summary. */
  async run(s: TapSummary): Promise<CompiledOutput[]> {
    const L1 = this.layers, d = this.dim;
    if (s.layers !== L1 || s.dim !== d) throw new InvalidArgumentError(`summaries are ${s.layers} × ${s.dim}, the probes expect ${L1} × ${d}`, { field: "summary" });
    if (s.tokens < 1) throw new InvalidArgumentError("the summary covers no token", { field: "summary" });
    if (this.request.max === true && s.max === undefined) throw new InvalidArgumentError("the summary has no max (ask with request.max)", { field: "summary.max" });
    if (this.request.pooled !== false && s.sum === undefined) throw new InvalidArgumentError("the summary has no sum and last token (ask with request.pooled)", { field: "summary.pooled" });
    const G = this.request.gates?.count ?? 0;
    if (s.gates !== G) throw new InvalidArgumentError(`the summary has ${s.gates} gates, the probes feed ${G}`, { field: "summary.gates" });
    // MHA probes: attention reads from a prompt summarised in one run, else every token's projections
    const H = this.request.attention?.heads ?? 0;
    const P = this.request.projections?.width ?? 0;
    if (s.attnHeads > 0 ? s.attnHeads !== H : s.projWidth !== P) {
      throw new InvalidArgumentError(`the summary has ${s.attnHeads > 0 ? `attention reads of ${s.attnHeads} heads` : `projections of width ${s.projWidth}`}, the probes need ${H > 0 ? `${H} heads or ` : ""}width ${P}`, { field: s.attnHeads > 0 ? "summary.attn" : "summary.proj" });
    }
    const projected = this.mha.length > 0 ? await projectedMhaFor(this.mha) : undefined;
    const mha = projected === undefined ? [] : s.attnHeads > 0 ? await projected.runAttended(s.attn!) : await projected.run(s.proj!, s.tokens);
    let k = 0;
    return this.probes.map((p, i) => (p.aggregator instanceof MhaAggregator ? mha[k++] : readProbe(p, s, this.gateOf[i], this.norms[i], this.layerGates[i])));
  }
}

/**
 * Scoring gates as graph inputs: w_l/σ_l and −(μ_l/σ_l)·w_l (the score of the standardised token, from the raw
 * one), [L+1, d, G] and [L+1, G].
 */
function foldGates(scoring: Probe[], L1: number, d: number): SummaryGates {
  const G = scoring.length;
  const weights = new Float32Array(L1 * d * G); // [L+1, d, G]
  const bias = new Float32Array(L1 * G); // [L+1, G]
  scoring.forEach((p, g) => {
    const w = (p.aggregator as ScoringAggregator).tokenGate.data; // [L+1, d, 1]
    const norm = checkedInputNorm(p);
    const folded = norm === undefined ? { weights: w, bias: undefined } : foldInputNorm(w, norm, L1, d, 1); // [L+1, d, 1], [L+1, 1]
    for (let k = 0; k < L1 * d; k++) weights[k * G + g] = folded.weights[k];
    if (folded.bias !== undefined) for (let l = 0; l < L1; l++) bias[l * G + g] = folded.bias[l];
  });
  return { weights, bias, count: G };
}

/** μ and 1/σ [L+1, d] in float64 (a multiply per value instead of a divide). */
interface Norm {
  mean: Float64Array;
  inv: Float64Array;
}

/**
 * A scoring probe's layer stage on the raw gate sums: layer l's standardised read z_l = (n_l/e_l − μ_l) ⊙ (1/σ_l),
 * with n_l = Σ e^{s_t} x_t and e_l = Σ e^{s_t}, is affine in n_l, so
 *   z_l · w      = (n_l · gate_l)/e_l − gateOffset_l,           gate_l = w ⊙ (1/σ_l), gateOffset_l = (μ_l ⊙ 1/σ_l) · w
 *   (Σ β_l z_l)·W = Σ_l (β_l/e_l) (n_l ⊙ 1/σ_l) · W − Σ_l β_l headOffset_l,   headOffset_l = (μ_l ⊙ 1/σ_l) · W [C]
 * which reads each layer's n_l twice (its score, then its share of the mix) with no per-value standardisation.
 */
interface FoldedLayerGate {
  /** [L+1, d] */
  gate: Float64Array;
  /** [L+1] */
  gateOffset: Float64Array;
  /** [L+1, C] */
  headOffset: Float64Array;
}

function foldLayerGate(p: Probe, a: ScoringAggregator, { mean, inv }: Norm): FoldedLayerGate {
  const { layers: L1, dim: d, classes: C } = p.shape;
  const w = a.layerGate.data, W = p.headWeight.data; // [d, 1], [d, C]
  const gate = new Float64Array(L1 * d), gateOffset = new Float64Array(L1), headOffset = new Float64Array(L1 * C);
  for (let l = 0; l < L1; l++) {
    for (let j = 0, k = l * d; j < d; j++, k++) {
      const muInv = mean[k] * inv[k];
      gate[k] = w[j] * inv[k];
      gateOffset[l] += muInv * w[j];
      for (let c = 0; c < C; c++) headOffset[l * C + c] += muInv * W[j * C + c];
    }
  }
  return { gate, gateOffset, headOffset };
}

/**
 * One probe from the summary, in float64. A layer-l value x is read standardised as (x · scale − μ_l)/σ_l where
 * it is used (no per-layer buffers); a scoring probe's through its FoldedLayerGate.
 */
function readProbe(p: Probe, s: TapSummary, gate: number, { mean, inv }: Norm, folded: FoldedLayerGate | undefined): CompiledOutput {
  const { layers: L1, dim: d, classes: C } = p.shape;
  const a = p.aggregator;
  const v = new Float64Array(d); // the aggregator's output [d] (a scoring probe's without its constant part: headShift)
  const headShift = new Float64Array(C); // [C] taken from the logits
  let layerWeights: Float32Array | undefined;
  if (a instanceof PoolingAggregator) {
    if (a.pool === "mean") {
      // the mean over layers of each layer's standardised token mean
      const x = s.sum!, c = 1 / s.tokens;
      for (let l = 0; l < L1; l++) for (let j = 0, k = l * d; j < d; j++, k++) v[j] += ((x[k] * c - mean[k]) * inv[k]) / L1;
    } else {
      const x = s.max!;
      v.fill(-Infinity);
      for (let l = 0; l < L1; l++) {
        for (let j = 0, k = l * d; j < d; j++, k++) {
          const z = (x[k] - mean[k]) * inv[k];
          if (z > v[j]) v[j] = z;
        }
      }
    }
  } else if (a instanceof ScoringAggregator) {
    // per layer the standardised gate-weighted token mean, scored, then mixed by softmax over layers (FoldedLayerGate)
    const G = s.gates, num = s.gateNum!, den = s.gateDen!;
    const { gate: w, gateOffset, headOffset } = folded!;
    const scores = new Float64Array(L1); // [L+1]
    for (let l = 0; l < L1; l++) {
      const off = (l * G + gate) * d;
      let dot = 0;
      for (let j = 0, k = l * d; j < d; j++, k++) dot += num[off + j] * w[k];
      scores[l] = Math.tanh(dot / den[l * G + gate] - gateOffset[l]);
    }
    const beta = softmax(scores); // [L+1]
    for (let l = 0; l < L1; l++) {
      const share = beta[l] / den[l * G + gate], off = (l * G + gate) * d;
      for (let j = 0, k = l * d; j < d; j++, k++) v[j] += share * num[off + j] * inv[k];
      for (let c = 0; c < C; c++) headShift[c] += beta[l] * headOffset[l * C + c];
    }
    layerWeights = Float32Array.from(beta);
  } else if (a instanceof FixedAggregator) {
    const l = a.layer;
    const x = a.token === "last" ? s.last! : a.token === "max" ? s.max! : s.sum!;
    const c = a.token === "mean" ? 1 / s.tokens : 1;
    for (let j = 0, k = l * d; j < d; j++, k++) v[j] = (x[k] * c - mean[k]) * inv[k];
  } else {
    throw new InvalidArgumentError(`a ${p.config.kind} probe cannot be read from token summaries`, { field: "kind" });
  }
  // head: logits [C] = v · W [d, C] + b, then softmax
  const W = p.headWeight.data, b = p.headBias.data;
  const logits = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let acc = b[c] - headShift[c];
    for (let j = 0; j < d; j++) acc += v[j] * W[j * C + c];
    logits[c] = acc;
  }
  return { probabilities: Float32Array.from(softmax(logits)), ...(layerWeights !== undefined ? { layerWeights } : {}) };
}

function softmax(x: Float64Array): Float64Array {
  let m = -Infinity;
  for (const v of x) if (v > m) m = v;
  const e = x.map((v) => Math.exp(v - m));
  const z = e.reduce((acc, v) => acc + v, 0);
  return e.map((v) => v / z);
}

/** Sets kept at once (each holds its folded gate vectors: (L+1)·d·G floats). */
const summaryCache = new ProbeSetCache<SummaryProbes>(16, (probes) => new SummaryProbes(probes));

/** The SummaryProbes of this exact set of probe objects (in this order), built on first use (LRU cache). */
export function summaryProbesFor(probes: readonly Probe[]): SummaryProbes {
  return summaryCache.get(probes);
}
