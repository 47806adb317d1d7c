/**
 * Classification metrics. Probabilities are [N, C] row-major; for binary tasks the positive class is 1.
 */
import { InvalidArgumentError } from "../errors.js";

export function argmaxRows(probs: ArrayLike<number>, C: number): Int32Array {
  const n = probs.length / C;
  const out = new Int32Array(n); // [N]
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < C; j++) if (probs[i * C + j] > probs[i * C + best]) best = j;
    out[i] = best;
  }
  return out;
}

function check(labels: ArrayLike<number>, preds: ArrayLike<number>): void {
  if (labels.length !== preds.length) throw new InvalidArgumentError(`${labels.length} labels but ${preds.length} predictions`, { field: "predictions" });
  if (labels.length === 0) throw new InvalidArgumentError("no examples to score", { field: "labels" });
}

export function accuracy(labels: ArrayLike<number>, preds: ArrayLike<number>): number {
  check(labels, preds);
  let ok = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i] === preds[i]) ok++;
  return ok / labels.length;
}

/** [C, C] counts, row = true class, column = predicted class. */
export function confusionMatrix(labels: ArrayLike<number>, preds: ArrayLike<number>, C: number): number[][] {
  check(labels, preds);
  const m = Array.from({ length: C }, () => new Array<number>(C).fill(0));
  for (let i = 0; i < labels.length; i++) m[labels[i]][preds[i]]++;
  return m;
}

export interface ClassScores {
  precision: number;
  recall: number;
  f1: number;
}

/** Precision, recall, F1 of one class (0 where undefined, as scikit-learn's zero_division=0). */
export function classScores(labels: ArrayLike<number>, preds: ArrayLike<number>, positive = 1): ClassScores {
  check(labels, preds);
  let tp = 0, fp = 0, fn = 0;
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i] === positive, p = preds[i] === positive;
    if (y && p) tp++;
    else if (p) fp++;
    else if (y) fn++;
  }
  const precision = tp + fp === 0 ? 0 : tp / (tp + fp);
  const recall = tp + fn === 0 ? 0 : tp / (tp + fn);
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  return { precision, recall, f1 };
}

export function binaryF1(labels: ArrayLike<number>, preds: ArrayLike<number>, positive = 1): number {
  return classScores(labels, preds, positive).f1;
}

/** Unweighted mean of the per-class F1 over C classes. */
export function macroF1(labels: ArrayLike<number>, preds: ArrayLike<number>, C: number): number {
  let s = 0;
  for (let c = 0; c < C; c++) s += classScores(labels, preds, c).f1;
  return s / C;
}

/** Sort order by descending score (ties keep input order). */
function byScoreDesc(scores: ArrayLike<number>): number[] {
  return Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
}

/** Distinct-threshold points (descending score): cumulative true and false positives. */
function thresholdPoints(isPos: ArrayLike<boolean>, scores: ArrayLike<number>): { tp: number[]; fp: number[]; thr: number[] } {
  const order = byScoreDesc(scores);
  const tp: number[] = [], fp: number[] = [], thr: number[] = [];
  let t = 0, f = 0;
  for (let k = 0; k < order.length; k++) {
    const i = order[k];
    if (isPos[i]) t++;
    else f++;
    if (k === order.length - 1 || scores[order[k + 1]] !== scores[i]) {
      tp.push(t); fp.push(f); thr.push(scores[i]);
    }
  }
  return { tp, fp, thr };
}

function positives(labels: ArrayLike<number>, positive: number): boolean[] {
  return Array.from(labels, (y) => y === positive);
}

/** Average precision: Σ (R_k − R_{k−1}) · P_k over distinct thresholds (scikit-learn's definition). */
export function averagePrecision(labels: ArrayLike<number>, scores: ArrayLike<number>, positive = 1): number {
  const pos = positives(labels, positive);
  const P = pos.filter(Boolean).length;
  if (P === 0) return 0;
  const { tp, fp } = thresholdPoints(pos, scores);
  let ap = 0, prevR = 0;
  for (let k = 0; k < tp.length; k++) {
    const r = tp[k] / P;
    ap += (r - prevR) * (tp[k] / (tp[k] + fp[k]));
    prevR = r;
  }
  return ap;
}

/** Area under the ROC curve (trapezoids over distinct thresholds; ties count one half). NaN with one class. */
export function rocAuc(labels: ArrayLike<number>, scores: ArrayLike<number>, positive = 1): number {
  const pos = positives(labels, positive);
  const P = pos.filter(Boolean).length, N = pos.length - P;
  if (P === 0 || N === 0) return NaN;
  const { tp, fp } = thresholdPoints(pos, scores);
  let auc = 0, px = 0, py = 0;
  for (let k = 0; k < tp.length; k++) {
    const x = fp[k] / N, y = tp[k] / P;
    auc += ((x - px) * (y + py)) / 2;
    px = x; py = y;
  }
  return auc;
}

/** ROC points (fpr, tpr) from (0,0) to (1,1). */
export function rocCurve(labels: ArrayLike<number>, scores: ArrayLike<number>, positive = 1): { fpr: number[]; tpr: number[]; thresholds: number[] } {
  const pos = positives(labels, positive);
  const P = Math.max(1, pos.filter(Boolean).length), N = Math.max(1, pos.length - pos.filter(Boolean).length);
  const { tp, fp, thr } = thresholdPoints(pos, scores);
  return { fpr: [0, ...fp.map((f) => f / N)], tpr: [0, ...tp.map((t) => t / P)], thresholds: [Infinity, ...thr] };
}

/** Precision-recall points, one per distinct threshold (descending). */
export function prCurve(labels: ArrayLike<number>, scores: ArrayLike<number>, positive = 1): { precision: number[]; recall: number[]; thresholds: number[] } {
  const pos = positives(labels, positive);
  const P = Math.max(1, pos.filter(Boolean).length);
  const { tp, fp, thr } = thresholdPoints(pos, scores);
  return { precision: tp.map((t, k) => t / (t + fp[k])), recall: tp.map((t) => t / P), thresholds: thr };
}

/**
 * Expected calibration error with equal-width confidence bins (default 15): Σ_b |B_b|/N · |acc(b) − conf(b)|,
 * confidence = max class probability.
 */
export function ece(labels: ArrayLike<number>, probs: ArrayLike<number>, C: number, bins = 15): number {
  const n = labels.length;
  if (probs.length !== n * C) throw new InvalidArgumentError(`${n} labels but ${probs.length / C} probability rows`, { field: "probabilities" });
  const { confidence, accuracy, count } = calibrationBins(labels, probs, C, bins);
  let e = 0;
  for (let b = 0; b < bins; b++) if (count[b] > 0) e += (count[b] / n) * Math.abs(accuracy[b] - confidence[b]);
  return e;
}

/** Reliability diagram data: per equal-width bin (k/B, (k+1)/B] of max probability, mean confidence, accuracy and count. */
export function calibrationBins(labels: ArrayLike<number>, probs: ArrayLike<number>, C: number, bins = 15): { confidence: number[]; accuracy: number[]; count: number[] } {
  const pred = argmaxRows(probs, C);
  const count = new Array<number>(bins).fill(0), conf = new Array<number>(bins).fill(0), acc = new Array<number>(bins).fill(0); // [bins]
  for (let i = 0; i < labels.length; i++) {
    const p = probs[i * C + pred[i]];
    const b = Math.min(bins - 1, Math.max(0, Math.ceil(p * bins) - 1));
    count[b]++; conf[b] += p; if (pred[i] === labels[i]) acc[b]++;
  }
  return { confidence: conf.map((c, b) => (count[b] ? c / count[b] : 0)), accuracy: acc.map((a, b) => (count[b] ? a / count[b] : 0)), count };
}

/** P(class 1) of each row of binary probabilities [N, 2]. */
export function positiveScores(probs: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: probs.length / 2 }, (_, i) => probs[2 * i + 1]); // [N]
}

/** Predicted classes [N]: for binary tasks with a threshold, P(class 1) ≥ threshold; otherwise the argmax. */
export function predictClasses(probs: ArrayLike<number>, C: number, threshold?: number): Int32Array {
  return C === 2 && threshold !== undefined ? thresholdPredictions(positiveScores(probs), threshold) : argmaxRows(probs, C);
}

/** Binary decisions at a threshold on P(positive). */
export function thresholdPredictions(scores: ArrayLike<number>, threshold: number): Int32Array {
  return Int32Array.from(scores as ArrayLike<number>, (s) => (s >= threshold ? 1 : 0));
}

/**
 * The decision threshold on P(positive) chosen on validation data: the one with maximal F1, or (with
 * `targetFpr`) the lowest threshold whose false-positive rate stays ≤ targetFpr.
 */
export function chooseThreshold(labels: ArrayLike<number>, scores: ArrayLike<number>, options: { targetFpr?: number } = {}): number {
  const pos = positives(labels, 1);
  const P = pos.filter(Boolean).length, N = pos.length - P;
  const { tp, fp, thr } = thresholdPoints(pos, scores);
  if (thr.length === 0) return 0.5;
  if (options.targetFpr !== undefined) {
    let best = Infinity;
    for (let k = 0; k < thr.length; k++) if (N === 0 || fp[k] / N <= options.targetFpr) best = thr[k];
    return best === Infinity ? thr[0] + 1e-6 : best;
  }
  let bestF1 = -1, best = 0.5;
  for (let k = 0; k < thr.length; k++) {
    const prec = tp[k] / (tp[k] + fp[k]), rec = P === 0 ? 0 : tp[k] / P;
    const f1 = prec + rec === 0 ? 0 : (2 * prec * rec) / (prec + rec);
    if (f1 > bestF1) { bestF1 = f1; best = thr[k]; }
  }
  return best;
}

export interface MetricReport {
  n: number;
  accuracy: number;
  macroF1: number;
  /** Binary tasks only (positive class 1), at `threshold`. */
  f1?: number;
  precision?: number;
  recall?: number;
  auprc?: number;
  rocAuc?: number;
  threshold?: number;
  ece: number;
}

/** All metrics for probabilities [N, C]; binary decisions use `threshold` on P(class 1) (default argmax). */
export function evaluate(labels: ArrayLike<number>, probs: ArrayLike<number>, C: number, threshold?: number): MetricReport {
  const binary = C === 2;
  const scores = binary ? positiveScores(probs) : undefined; // [N]
  const preds = predictClasses(probs, C, threshold); // [N]
  const r: MetricReport = { n: labels.length, accuracy: accuracy(labels, preds), macroF1: macroF1(labels, preds, C), ece: ece(labels, probs, C) };
  if (binary) {
    const s = classScores(labels, preds, 1);
    Object.assign(r, { f1: s.f1, precision: s.precision, recall: s.recall, auprc: averagePrecision(labels, scores!), rocAuc: rocAuc(labels, scores!), threshold });
  }
  return r;
}
