/**
 * Response probes while the answer streams: one tracker per probe and request keeps the aggregation state over
 * the tokens generated so far and updates it from each new token's hidden states x [L+1, d].
 *
 * - pooling (mean|max), the scoring gate and fixed probes (last|mean|max) update in O((L+1)·d) per token: running sums / maxima
 *   per layer, and for the gate an online softmax (running max m, normaliser z and weighted sum per layer, rescaled
 *   by exp(m_old − m_new) when the max moves). The layer stage and the head then cost O((L+1)·d + d·C). The result
 *   equals the batch computation (Probe.forward) over the same tokens — test/probe-response.test.ts checks every
 *   prefix of a 64-token generation to 1e-5.
 * - MHA attends over all pairs of tokens, so it cannot be updated cheaply: it re-runs (compiled, compiled.ts)
 *   over all response tokens every `every` tokens, and between runs reports its last reading.
 */
import { InvalidArgumentError } from "../errors.js";
import { FixedAggregator } from "./aggregators/fixed.js";
import { MhaAggregator } from "./aggregators/mha.js";
import { PoolingAggregator } from "./aggregators/pooling.js";
import { ScoringAggregator } from "./aggregators/scoring.js";
import { compiledProbesFor } from "./compiled.js";
import { checkedInputNorm, type Probe } from "./probe.js";

/** A probe's view of the response after some tokens. */
export interface ResponseProbabilities {
  /** [C] */
  probabilities: Float32Array;
  /** [L+1] scoring probes: the layer gate. */
  layerWeights?: Float32Array;
}

export interface ResponseTracker {
  /** Response tokens seen so far. */
  readonly tokens: number;
  /**
   * Add one token's hidden states x [L+1, d] (layer-major, as a decode step's HiddenStates [L+1, 1, d]); returns
   * the probe's reading when it was re-evaluated (every token, or every `every` tokens for MHA).
   */
  push(x: Float32Array): Promise<ResponseProbabilities | undefined>;
}

/** A tracker for `probe`; `every` (default 8) is how often an MHA probe re-runs. */
export function responseTracker(probe: Probe, options: { every?: number } = {}): ResponseTracker {
  const every = options.every ?? 8;
  if (!Number.isInteger(every) || every < 1) throw new InvalidArgumentError(`every must be a positive integer, got ${every}`, { field: "every" });
  const agg = probe.aggregator;
  if (agg instanceof MhaAggregator) return new RerunTracker(probe, every);
  return new IncrementalTracker(probe);
}

function softmaxInto(logits: Float64Array, out: Float32Array): void {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (let j = 0; j < logits.length; j++) sum += Math.exp(logits[j] - max);
  for (let j = 0; j < logits.length; j++) out[j] = Math.exp(logits[j] - max) / sum;
}

/**
 * Pooling, scoring and fixed probes: O((L+1)·d) state updated per token (see the file comment). The state is kept
 * over the raw states x; a standardised probe's (x − μ)/σ is affine per element, so it moves onto the readout
 * (a mean, a max (σ > 0) and a weighted sum whose weights sum to 1 commute with it) and into the gate vectors.
 */
class IncrementalTracker implements ResponseTracker {
  tokens = 0;
  private readonly L1: number;
  private readonly d: number;
  /** [L+1, d] 1/σ and μ/σ (1 and 0 for a raw probe). */
  private readonly inv: Float64Array;
  private readonly muInv: Float64Array;
  /**
   * pooling mean: [d] Σ_t Σ_l x_l/σ_l; pooling max, fixed max / mean: [L+1, d] running max / sum of x;
   * scoring: [L+1, d] the gate's running Σ e^(s−m)·x.
   */
  private readonly acc: Float64Array;
  /** pooling mean: [d] Σ_l μ_l/σ_l */
  private readonly offset: Float64Array;
  /** scoring: the token gate folded onto raw x, w_l/σ_l [L+1, d] and −w_l·μ_l/σ_l [L+1] */
  private readonly gate: Float64Array;
  private readonly gateBias: Float64Array;
  /** scoring: the layer gate folded per layer, w2/σ_l [L+1, d] and w2·μ_l/σ_l [L+1] */
  private readonly layerGate: Float64Array;
  private readonly layerGateBias: Float64Array;
  /** scoring: running max m_l, normaliser z_l and Σ_j layerGate_lj·acc_lj per layer [L+1] (online softmax). */
  private readonly m: Float64Array;
  private readonly z: Float64Array;
  private readonly gateDot: Float64Array;

  constructor(private readonly probe: Probe) {
    const L1 = (this.L1 = probe.shape.layers);
    const d = (this.d = probe.shape.dim);
    const n = L1 * d;
    const norm = checkedInputNorm(probe); // refused here, not at the first token
    this.inv = norm === undefined ? new Float64Array(n).fill(1) : Float64Array.from(norm.std, (v) => 1 / v);
    this.muInv = norm === undefined ? new Float64Array(n) : Float64Array.from(norm.mean, (v, i) => v * this.inv[i]);
    const agg = probe.aggregator;
    const meanPool = agg instanceof PoolingAggregator && agg.pool === "mean";
    this.acc = new Float64Array(meanPool ? d : n);
    this.offset = new Float64Array(meanPool ? d : 0);
    if (meanPool) for (let i = 0; i < n; i++) this.offset[i % d] += this.muInv[i];
    if ((agg instanceof PoolingAggregator && agg.pool === "max") || (agg instanceof FixedAggregator && agg.token === "max")) this.acc.fill(-Infinity);
    if (agg instanceof FixedAggregator && !(agg.layer >= 0 && agg.layer < L1)) {
      throw new InvalidArgumentError(`fixed probe layer ${agg.layer} is outside 0..${L1 - 1}`, { field: "layer" });
    }
    const scoring = agg instanceof ScoringAggregator;
    this.gate = new Float64Array(scoring ? n : 0);
    this.gateBias = new Float64Array(scoring ? L1 : 0);
    this.layerGate = new Float64Array(scoring ? n : 0);
    this.layerGateBias = new Float64Array(scoring ? L1 : 0);
    if (scoring) {
      const w = agg.tokenGate.data, w2 = agg.layerGate.data; // [L+1, d, 1], [d, 1]
      for (let i = 0; i < n; i++) {
        const l = Math.floor(i / d), j = i % d;
        this.gate[i] = w[i] * this.inv[i];
        this.gateBias[l] -= w[i] * this.muInv[i];
        this.layerGate[i] = w2[j] * this.inv[i];
        this.layerGateBias[l] += w2[j] * this.muInv[i];
      }
    }
    this.m = new Float64Array(scoring ? L1 : 0).fill(-Infinity);
    this.z = new Float64Array(scoring ? L1 : 0);
    this.gateDot = new Float64Array(scoring ? L1 : 0);
  }

  async push(x: Float32Array): Promise<ResponseProbabilities> {
    const { L1, d, acc, inv, muInv } = this;
    if (x.length !== L1 * d) throw new InvalidArgumentError(`a token's hidden states have ${x.length} values, the probe expects [${L1}, ${d}]`, { field: "hidden" });
    const n = ++this.tokens;
    const agg = this.probe.aggregator;
    const v = new Float64Array(d); // [d] the aggregated (standardised) vector
    let layerWeights: Float32Array | undefined;
    if (agg instanceof PoolingAggregator) {
      if (agg.pool === "mean") {
        // v = (1/L+1) Σ_l (Σ_t x_l/n − μ_l)/σ_l
        for (let l = 0; l < L1; l++) for (let j = 0, i = l * d; j < d; j++, i++) acc[j] += x[i] * inv[i];
        for (let j = 0; j < d; j++) v[j] = (acc[j] / n - this.offset[j]) / L1;
      } else {
        for (let i = 0; i < acc.length; i++) if (x[i] > acc[i]) acc[i] = x[i];
        v.fill(-Infinity);
        for (let l = 0; l < L1; l++) for (let j = 0, i = l * d; j < d; j++, i++) {
          const s = acc[i] * inv[i] - muInv[i];
          if (s > v[j]) v[j] = s;
        }
      }
    } else if (agg instanceof ScoringAggregator) {
      const { gate, layerGate, m, z, gateDot } = this;
      const beta = new Float64Array(L1); // [L+1] the layer gate's scores, then weights
      let max = -Infinity;
      for (let l = 0; l < L1; l++) {
        const o = l * d;
        let dot = this.gateBias[l], dot2 = 0;
        for (let j = 0; j < d; j++) {
          dot += gate[o + j] * x[o + j];
          dot2 += layerGate[o + j] * x[o + j];
        }
        const s = Math.tanh(dot);
        // online softmax: keep Σ e^(s_i − m) with m the running max (rescale when it moves)
        if (s > m[l]) {
          const r = m[l] === -Infinity ? 0 : Math.exp(m[l] - s);
          for (let j = 0; j < d; j++) acc[o + j] *= r;
          z[l] *= r;
          gateDot[l] *= r;
          m[l] = s;
        }
        const e = Math.exp(s - m[l]);
        z[l] += e;
        gateDot[l] += e * dot2;
        for (let j = 0; j < d; j++) acc[o + j] += e * x[o + j];
        // the layer gate on the standardised gate-weighted mean: Σ_j w2_j (acc_lj/z_l − μ_lj)/σ_lj
        beta[l] = Math.tanh(gateDot[l] / z[l] - this.layerGateBias[l]);
        max = Math.max(max, beta[l]);
      }
      let sum = 0;
      for (let l = 0; l < L1; l++) sum += beta[l] = Math.exp(beta[l] - max);
      for (let l = 0; l < L1; l++) {
        const b = (beta[l] /= sum), a = b / z[l], o = l * d;
        for (let j = 0; j < d; j++) v[j] += a * acc[o + j] * inv[o + j] - b * muInv[o + j];
      }
      layerWeights = Float32Array.from(beta);
    } else if (agg instanceof FixedAggregator) {
      const o = agg.layer * d;
      if (agg.token === "last") for (let j = 0; j < d; j++) acc[o + j] = x[o + j];
      else if (agg.token === "max") for (let j = 0; j < d; j++) acc[o + j] = Math.max(acc[o + j], x[o + j]);
      else for (let j = 0; j < d; j++) acc[o + j] += x[o + j];
      const scale = agg.token === "mean" ? 1 / n : 1;
      for (let j = 0; j < d; j++) v[j] = acc[o + j] * scale * inv[o + j] - muInv[o + j];
    } else {
      throw new InvalidArgumentError(`no incremental form for probe kind '${this.probe.config.kind}'`, { field: "kind" });
    }
    // head: logits [C] = v · W [d, C] + b
    const C = this.probe.shape.classes;
    const W = this.probe.headWeight.data, b = this.probe.headBias.data;
    const logits = new Float64Array(C); // [C]
    for (let c = 0; c < C; c++) {
      let s = b[c];
      for (let j = 0; j < d; j++) s += v[j] * W[j * C + c];
      logits[c] = s;
    }
    const probabilities = new Float32Array(C); // [C]
    softmaxInto(logits, probabilities);
    return layerWeights !== undefined ? { probabilities, layerWeights } : { probabilities };
  }
}

/** MHA: keeps the response's hidden states and re-runs the compiled probe every `every` tokens. */
class RerunTracker implements ResponseTracker {
  tokens = 0;
  /** [capacity, L+1, d] token-major, grown by doubling. */
  private buf: Float32Array;
  constructor(private readonly probe: Probe, private readonly every: number) {
    this.buf = new Float32Array(64 * probe.shape.layers * probe.shape.dim);
  }
  async push(x: Float32Array): Promise<ResponseProbabilities | undefined> {
    const L1 = this.probe.shape.layers, d = this.probe.shape.dim, n = L1 * d;
    if (x.length !== n) throw new InvalidArgumentError(`a token's hidden states have ${x.length} values, the probe expects [${L1}, ${d}]`, { field: "hidden" });
    if ((this.tokens + 1) * n > this.buf.length) {
      const grown = new Float32Array(this.buf.length * 2);
      grown.set(this.buf);
      this.buf = grown;
    }
    this.buf.set(x, this.tokens * n);
    this.tokens++;
    if (this.tokens % this.every !== 0 && this.tokens !== 1) return undefined;
    const T = this.tokens;
    const h = new Float32Array(L1 * T * d); // [L+1, 1, T, d] layer-major for the compiled graph
    for (let t = 0; t < T; t++) for (let l = 0; l < L1; l++) h.set(this.buf.subarray(t * n + l * d, t * n + (l + 1) * d), (l * T + t) * d);
    const [out] = await (await compiledProbesFor([this.probe])).run(h, 1, T);
    return { probabilities: out.probabilities };
  }
}
