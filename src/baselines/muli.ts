/**
 * MULI (Hu et al., NeurIPS 2024, "Toxicity Detection for Free"): the serving model's logits at the first
 * response position, log-softmax over the vocabulary, standardised per token id with training statistics,
 * into an L1-regularised logistic regression whose λ is chosen on validation. Sparse: most vocabulary
 * entries end with weight exactly 0.
 */
import { InvalidArgumentError } from "../errors.js";
import { denseDesign, fitLogRegPath, predictLogReg, type LogRegModel } from "../probe/logreg.js";

/** Row-wise log-softmax of logits [N, V] (float64 sums: vocabularies reach 150k entries). */
export function logSoftmaxRows(logits: ArrayLike<number>, V: number): Float32Array {
  if (logits.length % V !== 0) throw new InvalidArgumentError(`${logits.length} logits are not rows of ${V}`, { field: "logits" });
  const out = new Float32Array(logits.length); // [N, V]
  for (let r = 0; r < logits.length / V; r++) {
    let max = -Infinity;
    for (let j = 0; j < V; j++) max = Math.max(max, logits[r * V + j]);
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(logits[r * V + j] - max);
    const lse = max + Math.log(s);
    for (let j = 0; j < V; j++) out[r * V + j] = logits[r * V + j] - lse;
  }
  return out;
}

export interface MuliModel {
  vocab: number;
  /** [V] per-token-id mean and std of the training log-probabilities */
  mean: Float64Array;
  std: Float64Array;
  model: LogRegModel;
  /** Validation log-loss per λ on the path. */
  path: { lambda: number; valLoss: number; nonZero: number }[];
}

function standardize(lp: Float32Array, V: number, mean: Float64Array, std: Float64Array): Float32Array {
  const out = new Float32Array(lp.length); // [N, V]
  for (let k = 0; k < lp.length; k++) out[k] = (lp[k] - mean[k % V]) / std[k % V];
  return out;
}

/** The MULI features of logits [N, V]: log-softmax, then (x − mean) / std with the model's statistics. */
export function muliFeatures(m: Pick<MuliModel, "vocab" | "mean" | "std">, logits: ArrayLike<number>): Float32Array {
  return standardize(logSoftmaxRows(logits, m.vocab), m.vocab, m.mean, m.std);
}

/** Fits MULI on training logits [N, V] with labels, λ chosen on validation logits. */
export function fitMuli(train: ArrayLike<number>, yTrain: ArrayLike<number>, val: ArrayLike<number>, yVal: ArrayLike<number>, V: number, C: number): MuliModel {
  const lp = logSoftmaxRows(train, V); // [N, V]
  const N = lp.length / V;
  if (N !== yTrain.length) throw new InvalidArgumentError(`${N} logit rows but ${yTrain.length} labels`, { field: "labels" });
  const mean = new Float64Array(V), std = new Float64Array(V); // [V]
  for (let k = 0; k < lp.length; k++) mean[k % V] += lp[k] / N;
  for (let k = 0; k < lp.length; k++) std[k % V] += (lp[k] - mean[k % V]) ** 2 / N;
  for (let j = 0; j < V; j++) std[j] = Math.sqrt(std[j]) + 1e-6;
  const xs = standardize(lp, V, mean, std);
  const xv = muliFeatures({ vocab: V, mean, std }, val);
  const { model, path } = fitLogRegPath(denseDesign(xs, N, V), yTrain, denseDesign(xv, xv.length / V, V), yVal, C, { penalty: "l1" });
  return { vocab: V, mean, std, model, path };
}

/** Class probabilities [N, C] for logits [N, V]. */
export function predictMuli(m: MuliModel, logits: ArrayLike<number>): Float32Array {
  const x = muliFeatures(m, logits);
  return predictLogReg(denseDesign(x, x.length / m.vocab, m.vocab), m.model);
}
