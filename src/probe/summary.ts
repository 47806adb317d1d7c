/**
 * Probes read from the decoder graph's per-layer token summaries (types/summary.ts, graph/decoder.ts
 * `tapSummaries`) instead of the whole [L+1, T, d] hidden-state tensor: the live prefill path for pooling,
 * scoring and fixed probes. What each kind needs:
 *
 *   pooling mean / fixed mean: the masked sum and the token count; pooling max / fixed max: the max;
 *   fixed last: the last token; scoring: its token gate's Σ e^{s_t} x_t read along its layer gate and its head
 *   columns, and Σ e^{s_t}, per layer (s_t the gate's score), with the gate and read vectors fed to the graph as
 *   inputs (folded with the probe's standardisation here: FoldedScoring).
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
    const scoring = probes.filter((p) => p.aggregator instanceof ScoringAggregator);
    const folded = scoring.map((p) => foldScoring(p, p.aggregator as ScoringAggregator));
    let gate = 0, firstRead = 0;
    this.scoring = probes.map((p) => {
      if (!(p.aggregator instanceof ScoringAggregator)) return undefined;
      const f = folded[gate];
      const reads = { gate: gate++, firstRead, gateOffset: f.gateOffset, headOffset: f.headOffset };
      firstRead += f.width;
      return reads;
    });
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
      ...(scoring.length > 0 ? { gates: gateFeeds(folded, L1, d) } : {}),
      ...(this.mha.length > 0 ? mhaSummaryRequest(this.mha) : {}),
    };
  }

  /** The MHA probes of the set (read from the projections). */
  private readonly mha: Probe[];
  /** Each probe's μ and 1/σ [L+1, d] (0 and 1 when unstandardised). */
  private readonly norms: Norm[];
  /** Each probe's gate and reads when it is a scoring probe (undefined for the other kinds). */
  private readonly scoring: (ScoringReads | undefined)[];

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
    return this.probes.map((p, i) => (p.aggregator instanceof MhaAggregator ? mha[k++] : readProbe(p, s, this.norms[i], this.scoring[i])));
  }
}

/**
 * A scoring probe folded for the graph. Layer l's standardised read z_l = (n_l/e_l − μ_l) ⊙ (1/σ_l), with
 * n_l = Σ e^{s_t} x_t and e_l = Σ e^{s_t}, is affine in n_l, and the probe uses it only through its layer gate w and
 * its head W [d, C]:
 *   z_l · [w | W] = (n_l · R_l)/e_l − offset_l,   R_l = [w | W] ⊙ (1/σ_l) [d, 1+C], offset_l = (μ_l ⊙ 1/σ_l) · [w | W]
 * so the graph reads n_l along R_l's 1+C columns (foldInputNorm over [w | W] repeated per layer), and the token
 * gate's score vectors fold the same way (the score of the standardised token, from the raw one).
 */
interface FoldedScoring {
  /** [L+1, d, 1]: the token gate's score vectors, and [L+1] their biases */
  score: { weights: Float32Array; bias: Float32Array | undefined };
  /** [L+1, d, 1+C]: R_l */
  reads: Float32Array;
  /** 1 + C */
  width: number;
  /** [L+1]: the layer gate's share of offset_l */
  gateOffset: Float64Array;
  /** [L+1, C]: the head's share of offset_l */
  headOffset: Float64Array;
}

function foldScoring(p: Probe, a: ScoringAggregator): FoldedScoring {
  const { layers: L1, dim: d, classes: C } = p.shape;
  const n = 1 + C;
  const w = a.layerGate.data, W = p.headWeight.data; // [d, 1], [d, C]
  const perLayer = new Float32Array(L1 * d * n); // [L+1, d, 1+C]: [w | W] at every layer
  for (let l = 0; l < L1; l++) {
    for (let j = 0; j < d; j++) {
      const row = (l * d + j) * n;
      perLayer[row] = w[j];
      for (let c = 0; c < C; c++) perLayer[row + 1 + c] = W[j * C + c];
    }
  }
  const tokenGate = a.tokenGate.data; // [L+1, d, 1]
  const norm = checkedInputNorm(p);
  if (norm === undefined) {
    return { score: { weights: Float32Array.from(tokenGate), bias: undefined }, reads: perLayer, width: n, gateOffset: new Float64Array(L1), headOffset: new Float64Array(L1 * C) };
  }
  const folded = foldInputNorm(perLayer, norm, L1, d, n); // bias [L+1, 1+C] = −offset_l
  const gateOffset = new Float64Array(L1), headOffset = new Float64Array(L1 * C);
  for (let l = 0; l < L1; l++) {
    gateOffset[l] = -folded.bias[l * n];
    for (let c = 0; c < C; c++) headOffset[l * C + c] = -folded.bias[l * n + 1 + c];
  }
  return { score: foldInputNorm(tokenGate, norm, L1, d, 1), reads: folded.weights, width: n, gateOffset, headOffset };
}

/** The graph's gate inputs for a set's scoring probes (gate g = the g-th scoring probe): scores, then every probe's reads. */
function gateFeeds(folded: FoldedScoring[], L1: number, d: number): SummaryGates {
  const G = folded.length;
  const K = folded.reduce((acc, f) => acc + f.width, 0);
  const N = G + K;
  const weights = new Float32Array(L1 * d * N); // [L+1, d, G+K]
  const bias = new Float32Array(L1 * G); // [L+1, G]
  const readOf = new Int32Array(K); // [K]
  let k0 = G;
  folded.forEach((f, g) => {
    for (let r = 0; r < L1 * d; r++) {
      weights[r * N + g] = f.score.weights[r];
      for (let c = 0; c < f.width; c++) weights[r * N + k0 + c] = f.reads[r * f.width + c];
    }
    if (f.score.bias !== undefined) for (let l = 0; l < L1; l++) bias[l * G + g] = f.score.bias[l];
    readOf.fill(g, k0 - G, k0 - G + f.width);
    k0 += f.width;
  });
  return { weights, bias, count: G, readOf };
}

/** μ and 1/σ [L+1, d] in float64 (a multiply per value instead of a divide). */
interface Norm {
  mean: Float64Array;
  inv: Float64Array;
}

/** Where a scoring probe's reads sit in a summary: its gate, its first read column and its offsets (FoldedScoring). */
interface ScoringReads {
  gate: number;
  firstRead: number;
  /** [L+1] */
  gateOffset: Float64Array;
  /** [L+1, C] */
  headOffset: Float64Array;
}

/**
 * One probe from the summary, in float64. A layer-l value x is read standardised as (x · scale − μ_l)/σ_l where
 * it is used (no per-layer buffers); a scoring probe from its reads (FoldedScoring), which include its head.
 */
function readProbe(p: Probe, s: TapSummary, { mean, inv }: Norm, scoring: ScoringReads | undefined): CompiledOutput {
  const { layers: L1, dim: d, classes: C } = p.shape;
  const a = p.aggregator;
  const b = p.headBias.data;
  if (a instanceof ScoringAggregator) {
    // per layer the standardised gate-weighted token mean, scored, then mixed by softmax over layers, then the head:
    // each is a read of the numerator divided by the denominator, less its offset (FoldedScoring)
    const { gate, firstRead, gateOffset, headOffset } = scoring!;
    const G = s.gates, reads = s.gateReads!, den = s.gateDen!;
    const K = reads.length / L1;
    const scores = new Float64Array(L1); // [L+1]
    for (let l = 0; l < L1; l++) scores[l] = Math.tanh(reads[l * K + firstRead] / den[l * G + gate] - gateOffset[l]);
    const beta = softmax(scores); // [L+1]
    const logits = Float64Array.from(b); // [C]
    for (let l = 0; l < L1; l++) {
      const share = beta[l] / den[l * G + gate];
      for (let c = 0; c < C; c++) logits[c] += share * reads[l * K + firstRead + 1 + c] - beta[l] * headOffset[l * C + c];
    }
    return { probabilities: Float32Array.from(softmax(logits)), layerWeights: Float32Array.from(beta) };
  }
  const v = new Float64Array(d); // the aggregator's output [d]
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
  } else if (a instanceof FixedAggregator) {
    const l = a.layer;
    const x = a.token === "last" ? s.last! : a.token === "max" ? s.max! : s.sum!;
    const c = a.token === "mean" ? 1 / s.tokens : 1;
    for (let j = 0, k = l * d; j < d; j++, k++) v[j] = (x[k] * c - mean[k]) * inv[k];
  } else {
    throw new InvalidArgumentError(`a ${p.config.kind} probe cannot be read from token summaries`, { field: "kind" });
  }
  // head: logits [C] = v · W [d, C] + b, then softmax
  const W = p.headWeight.data;
  const logits = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let acc = b[c];
    for (let j = 0; j < d; j++) acc += v[j] * W[j * C + c];
    logits[c] = acc;
  }
  return { probabilities: Float32Array.from(softmax(logits)) };
}

function softmax(x: Float64Array): Float64Array {
  let m = -Infinity;
  for (const v of x) if (v > m) m = v;
  const e = x.map((v) => Math.exp(v - m));
  const z = e.reduce((acc, v) => acc + v, 0);
  return e.map((v) => v / z);
}

/** Sets kept at once (each holds its folded gate and read vectors: (L+1)·d·(G+K) floats). */
const summaryCache = new ProbeSetCache<SummaryProbes>(16, (probes) => new SummaryProbes(probes));

/** The SummaryProbes of this exact set of probe objects (in this order), built on first use (LRU cache). */
export function summaryProbesFor(probes: readonly Probe[]): SummaryProbes {
  return summaryCache.get(probes);
}
