/**
 * Multinomial logistic regression with an L1 (sparse) or L2 penalty, fitted by FISTA (accelerated proximal
 * gradient with backtracking) on a dense or CSR-sparse design matrix. Used by MULI (L1 on the vocabulary's
 * log-probabilities), TF-IDF (L2 on n-gram weights) and the exact heads of the pooling and fixed probes (L2, λ
 * by cross-validation).
 */
import { InvalidArgumentError } from "../errors.js";
import { Rng } from "../numeric/rng.js";

/** A design matrix X [rows, cols] through the two products the fit needs. */
export interface Design {
  readonly rows: number;
  readonly cols: number;
  /** out [rows, C] = X · W, W [cols, C] */
  mul(W: Float64Array, C: number, out: Float64Array): void;
  /** out [cols, C] = Xᵀ · R, R [rows, C] */
  tmul(R: Float64Array, C: number, out: Float64Array): void;
}

/** Dense row-major X [rows, cols]. */
export function denseDesign(x: Float32Array | Float64Array, rows: number, cols: number): Design {
  if (x.length !== rows * cols) throw new InvalidArgumentError(`design has ${x.length} values, expected ${rows}×${cols}`, { field: "x" });
  return {
    rows,
    cols,
    mul(W, C, out) {
      out.fill(0);
      for (let i = 0; i < rows; i++) {
        for (let f = 0; f < cols; f++) {
          const v = x[i * cols + f];
          if (v === 0) continue;
          for (let c = 0; c < C; c++) out[i * C + c] += v * W[f * C + c];
        }
      }
    },
    tmul(R, C, out) {
      out.fill(0);
      for (let i = 0; i < rows; i++) {
        for (let f = 0; f < cols; f++) {
          const v = x[i * cols + f];
          if (v === 0) continue;
          for (let c = 0; c < C; c++) out[f * C + c] += v * R[i * C + c];
        }
      }
    },
  };
}

/** Compressed sparse rows: row i holds values[indptr[i]..indptr[i+1]) at columns indices[…]. */
export interface Csr {
  /** [rows + 1] */
  indptr: Int32Array;
  /** [nnz] */
  indices: Int32Array;
  /** [nnz] */
  values: Float64Array;
  cols: number;
}

export function csrDesign(m: Csr): Design {
  const rows = m.indptr.length - 1;
  return {
    rows,
    cols: m.cols,
    mul(W, C, out) {
      out.fill(0);
      for (let i = 0; i < rows; i++) {
        for (let k = m.indptr[i]; k < m.indptr[i + 1]; k++) {
          const f = m.indices[k], v = m.values[k];
          for (let c = 0; c < C; c++) out[i * C + c] += v * W[f * C + c];
        }
      }
    },
    tmul(R, C, out) {
      out.fill(0);
      for (let i = 0; i < rows; i++) {
        for (let k = m.indptr[i]; k < m.indptr[i + 1]; k++) {
          const f = m.indices[k], v = m.values[k];
          for (let c = 0; c < C; c++) out[f * C + c] += v * R[i * C + c];
        }
      }
    },
  };
}

export interface LogRegModel {
  /** [cols, C] */
  W: Float64Array;
  /** [C] */
  b: Float64Array;
  classes: number;
  penalty: "l1" | "l2";
  lambda: number;
  iterations: number;
}

export interface LogRegOptions {
  penalty: "l1" | "l2";
  /** Penalty weight: loss = mean cross-entropy + λ·‖W‖₁ (l1) or + (λ/2)·‖W‖² (l2). The bias is not penalised. */
  lambda: number;
  /** Default 500. */
  maxIter?: number;
  /** Stop when the relative change of the objective stays below tol (default 1e-7). */
  tol?: number;
  /** Start from these weights (a regularisation path). */
  warm?: LogRegModel;
  /** Per-class loss weights [C] (default 1): loss = Σ w_y·CE / Σ w_y. */
  weights?: readonly number[];
}

/** Row-wise softmax in place of logits Z [rows, C]; returns the (class-weighted) mean cross-entropy against y. */
function softmaxLoss(Z: Float64Array, y: ArrayLike<number>, C: number, weights?: readonly number[]): number {
  let loss = 0, wsum = 0;
  for (let i = 0; i < y.length; i++) {
    let max = -Infinity;
    for (let c = 0; c < C; c++) max = Math.max(max, Z[i * C + c]);
    let s = 0;
    for (let c = 0; c < C; c++) s += Math.exp(Z[i * C + c] - max);
    const lse = max + Math.log(s);
    const w = weights?.[y[i]] ?? 1;
    loss += w * (lse - Z[i * C + y[i]]);
    wsum += w;
    for (let c = 0; c < C; c++) Z[i * C + c] = Math.exp(Z[i * C + c] - lse);
  }
  return loss / wsum;
}

/** Fits the model (deterministic: no randomness anywhere). */
export function fitLogReg(X: Design, y: ArrayLike<number>, C: number, o: LogRegOptions): LogRegModel {
  if (y.length !== X.rows) throw new InvalidArgumentError(`${X.rows} rows but ${y.length} labels`, { field: "labels" });
  if (!(o.lambda >= 0)) throw new InvalidArgumentError(`lambda must be ≥ 0, got ${o.lambda}`, { field: "lambda" });
  for (let i = 0; i < y.length; i++) if (!(Number.isInteger(y[i]) && y[i] >= 0 && y[i] < C)) throw new InvalidArgumentError(`label ${y[i]} outside 0..${C - 1}`, { field: "labels", offset: i });
  const F = X.cols, N = X.rows, P = F * C + C; // parameters: W then b
  const l2 = o.penalty === "l2" ? o.lambda : 0, l1 = o.penalty === "l1" ? o.lambda : 0;
  const x = new Float64Array(P); // current iterate [W | b]
  if (o.warm !== undefined) { x.set(o.warm.W); x.set(o.warm.b, F * C); }
  const Z = new Float64Array(N * C); // [N, C]
  let wTotal = 0;
  for (let i = 0; i < N; i++) wTotal += o.weights?.[y[i]] ?? 1;
  const gW = new Float64Array(F * C); // [F, C]
  // smooth part f(θ) = CE + (l2/2)‖W‖² and its gradient at θ
  const smooth = (theta: Float64Array, grad?: Float64Array): number => {
    X.mul(theta.subarray(0, F * C), C, Z);
    for (let i = 0; i < N; i++) for (let c = 0; c < C; c++) Z[i * C + c] += theta[F * C + c];
    let f = softmaxLoss(Z, y, C, o.weights);
    for (let k = 0; k < F * C; k++) f += 0.5 * l2 * theta[k] * theta[k];
    if (grad !== undefined) {
      for (let i = 0; i < N; i++) Z[i * C + y[i]] -= 1; // Z = P − Y
      for (let i = 0; i < N; i++) for (let c = 0; c < C; c++) Z[i * C + c] *= (o.weights?.[y[i]] ?? 1) / wTotal;
      X.tmul(Z, C, gW);
      for (let k = 0; k < F * C; k++) grad[k] = gW[k] + l2 * theta[k];
      for (let c = 0; c < C; c++) {
        let s = 0;
        for (let i = 0; i < N; i++) s += Z[i * C + c];
        grad[F * C + c] = s;
      }
    }
    return f;
  };
  const l1norm = (theta: Float64Array) => { let s = 0; for (let k = 0; k < F * C; k++) s += Math.abs(theta[k]); return s; };
  const yk = Float64Array.from(x), grad = new Float64Array(P), next = new Float64Array(P), prev = Float64Array.from(x);
  let step = 1, tk = 1, objPrev = smooth(x) + l1 * l1norm(x), it = 0;
  const maxIter = o.maxIter ?? 500, tol = o.tol ?? 1e-7;
  for (; it < maxIter; it++) {
    const fy = smooth(yk, grad);
    // backtracking: shrink the step until the quadratic upper bound holds at the proximal point
    for (;;) {
      for (let k = 0; k < P; k++) {
        const v = yk[k] - step * grad[k];
        next[k] = k < F * C && l1 > 0 ? Math.sign(v) * Math.max(Math.abs(v) - step * l1, 0) : v;
      }
      let lin = 0, sq = 0;
      for (let k = 0; k < P; k++) { const d = next[k] - yk[k]; lin += grad[k] * d; sq += d * d; }
      if (smooth(next) <= fy + lin + sq / (2 * step) + 1e-12 || step < 1e-12) break;
      step *= 0.5;
    }
    const tNext = (1 + Math.sqrt(1 + 4 * tk * tk)) / 2;
    for (let k = 0; k < P; k++) yk[k] = next[k] + ((tk - 1) / tNext) * (next[k] - prev[k]);
    tk = tNext;
    prev.set(next);
    const obj = smooth(next) + l1 * l1norm(next);
    if (obj > objPrev) { yk.set(next); tk = 1; } // restart momentum when the objective goes up
    if (Math.abs(objPrev - obj) <= tol * Math.max(1, Math.abs(obj))) { it++; break; }
    objPrev = obj;
  }
  return { W: prev.slice(0, F * C), b: prev.slice(F * C), classes: C, penalty: o.penalty, lambda: o.lambda, iterations: it };
}

/** Class probabilities [rows, C]. */
export function predictLogReg(X: Design, m: LogRegModel): Float32Array {
  const C = m.classes, Z = new Float64Array(X.rows * C); // [N, C]
  X.mul(m.W, C, Z);
  for (let i = 0; i < X.rows; i++) for (let c = 0; c < C; c++) Z[i * C + c] += m.b[c];
  softmaxLoss(Z, new Int32Array(X.rows), C);
  return Float32Array.from(Z);
}

/** Mean cross-entropy of probabilities [N, C]. */
export function logLoss(y: ArrayLike<number>, probs: ArrayLike<number>, C: number): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s -= Math.log(Math.max(probs[i * C + y[i]], 1e-12));
  return s / y.length;
}

/**
 * λ chosen on validation log-loss over a path from strong to weak regularisation (each fit warm-started
 * from the previous; for L1 the sparsest fit within one standard error of the best). L1 path: λ_max (all weights zero) × {0.5 … 1e-3}; L2: 1e-1 … 1e-5.
 */
export function fitLogRegPath(
  train: Design, yTrain: ArrayLike<number>, val: Design, yVal: ArrayLike<number>, C: number,
  o: { penalty: "l1" | "l2"; lambdas?: number[]; maxIter?: number; weights?: readonly number[] },
): { model: LogRegModel; path: { lambda: number; valLoss: number; nonZero: number }[] } {
  let lambdas = o.lambdas;
  if (lambdas === undefined) {
    if (o.penalty === "l1") {
      // gradient of the loss at W = 0 with the bias at the class log-priors: its largest entry is λ_max
      const counts = new Float64Array(C);
      for (let i = 0; i < yTrain.length; i++) counts[yTrain[i]]++;
      const R = new Float64Array(train.rows * C); // [N, C] = (P0 − Y) / N
      for (let i = 0; i < train.rows; i++) for (let c = 0; c < C; c++) R[i * C + c] = (counts[c] / train.rows - (yTrain[i] === c ? 1 : 0)) / train.rows;
      const g = new Float64Array(train.cols * C);
      train.tmul(R, C, g);
      const lmax = g.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
      lambdas = [0.5, 0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001].map((f) => f * lmax);
    } else lambdas = [...L2_LAMBDAS];
  }
  let warm: LogRegModel | undefined;
  const fits: { model: LogRegModel; valLoss: number; se: number }[] = [];
  const path: { lambda: number; valLoss: number; nonZero: number }[] = [];
  for (const lambda of lambdas) {
    const m = fitLogReg(train, yTrain, C, { penalty: o.penalty, lambda, warm, maxIter: o.maxIter, weights: o.weights });
    warm = m;
    const p = predictLogReg(val, m);
    const per = Array.from({ length: yVal.length }, (_, i) => -Math.log(Math.max(p[i * C + yVal[i]], 1e-12)));
    const valLoss = per.reduce((a, v) => a + v, 0) / per.length;
    const se = Math.sqrt(per.reduce((a, v) => a + (v - valLoss) ** 2, 0) / Math.max(1, per.length - 1) / per.length);
    fits.push({ model: m, valLoss, se });
    path.push({ lambda, valLoss, nonZero: m.W.reduce((a, v) => a + (v !== 0 ? 1 : 0), 0) });
  }
  const best = fits.reduce((a, b) => (b.valLoss < a.valLoss ? b : a));
  // L1: the one-standard-error rule (the sparsest fit within one SE of the best validation loss), as
  // glmnet's lambda.1se: the minimum alone keeps weights on features that only fit validation noise.
  const chosen = o.penalty === "l1" ? fits.find((f) => f.valLoss <= best.valLoss + best.se)! : best;
  return { model: chosen.model, path };
}

/** The default L2 path (strong → weak), shared by the single-split and the cross-validated choice. */
export const L2_LAMBDAS: readonly number[] = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5];

/**
 * λ chosen by stratified K-fold cross-validation: every row is scored once by a fit that did not see it, and the
 * λ with the lowest mean log-loss over all rows wins. A 10% validation split of a few hundred rows picks λ (and,
 * in the fixed-layer baseline, the layer) by differences smaller than its own noise; K folds use every labelled row.
 * `x` is [rows, cols] row-major; `seed` assigns the folds.
 */
export function crossValidatedLambda(
  x: Float32Array, rows: number, cols: number, y: ArrayLike<number>, C: number,
  o: { folds: number; seed: number; lambdas?: readonly number[]; weights?: readonly number[]; maxIter?: number; tol?: number },
): { lambda: number; cvLoss: number; path: { lambda: number; cvLoss: number }[] } {
  // every other point of the default path: held-out loss is flat within a factor of 3 of λ, and K folds × λs fits add up
  const lambdas = o.lambdas ?? L2_LAMBDAS.filter((_, i) => i % 2 === 0);
  const K = Math.max(2, Math.min(o.folds, rows));
  // stratified folds: each class's rows shuffled (seeded), then dealt round-robin
  const fold = new Int32Array(rows);
  const rng = new Rng(o.seed * 104729 + 3);
  let next = 0;
  for (let c = 0; c < C; c++) {
    const members: number[] = [];
    for (let i = 0; i < rows; i++) if (y[i] === c) members.push(i);
    rng.shuffle(members);
    for (const i of members) fold[i] = next++ % K;
  }
  const lossSum = new Float64Array(lambdas.length);
  let weightSum = 0;
  for (let f = 0; f < K; f++) {
    const inFold: number[] = [], outFold: number[] = [];
    for (let i = 0; i < rows; i++) (fold[i] === f ? inFold : outFold).push(i);
    if (inFold.length === 0 || outFold.length === 0) continue;
    const take = (idx: number[]) => { const m = new Float32Array(idx.length * cols); idx.forEach((i, r) => m.set(x.subarray(i * cols, (i + 1) * cols), r * cols)); return m; }; // [n, cols]
    const Xt = denseDesign(take(outFold), outFold.length, cols), Xv = denseDesign(take(inFold), inFold.length, cols);
    const yt = Int32Array.from(outFold, (i) => y[i]);
    let warm: LogRegModel | undefined;
    lambdas.forEach((lambda, j) => {
      // held-out losses only need to rank λ: a looser tolerance than the final fit's
      const m = fitLogReg(Xt, yt, C, { penalty: "l2", lambda, warm, maxIter: o.maxIter, tol: o.tol ?? 1e-5, weights: o.weights });
      warm = m;
      const p = predictLogReg(Xv, m);
      for (let r = 0; r < inFold.length; r++) {
        const w = o.weights?.[y[inFold[r]]] ?? 1;
        lossSum[j] -= w * Math.log(Math.max(p[r * C + y[inFold[r]]], 1e-12));
        if (j === 0) weightSum += w;
      }
    });
  }
  const path = lambdas.map((lambda, j) => ({ lambda, cvLoss: lossSum[j] / weightSum }));
  const best = path.reduce((a, b) => (b.cvLoss < a.cvLoss ? b : a));
  return { lambda: best.lambda, cvLoss: best.cvLoss, path };
}
