/**
 * Probe training: AdamW (β 0.9/0.999), cosine schedule with linear warm-up, mini-batches, at most N epochs,
 * early stopping on a validation metric, optional class weights; fully reproducible given a seed.
 */
import type { HiddenStates } from "../types/hidden.js";
import { InvalidArgumentError, NonFiniteError } from "../errors.js";
import { Tape, Tensor } from "../tensor/autograd.js";
import { makeBatch, type BatchScratch } from "../tensor/batch.js";
import { accuracy, chooseThreshold, classScores, evaluate, macroF1, positiveScores, type MetricReport } from "./metrics.js";
import { Probe, inputStatistics, softmaxRows, type ProbeConfig } from "./probe.js";
import { Rng } from "../numeric/rng.js";
import { crossValidatedLambda, denseDesign, fitLogReg, fitLogRegPath, type LogRegModel } from "./logreg.js";
import type { DatasetTask } from "../data/datasets.js";

/** Labelled hidden states, e.g. an opened feature cache (FeatureCache fits this shape) or arrays in memory. */
export interface ExampleSource {
  readonly size: number;
  /** [N] label ids */
  readonly labels: ArrayLike<number>;
  get(i: number): HiddenStates;
  /** Tokens of example i without reading its states (feature caches know it from their index); absent: get(i).tokens. */
  tokens?(i: number): number;
}

/** A subset of a source by index. */
export function subset(src: ExampleSource, indices: readonly number[]): ExampleSource {
  const tokens = src.tokens?.bind(src);
  return {
    size: indices.length,
    labels: Int32Array.from(indices, (i) => src.labels[i]),
    get: (i) => src.get(indices[i]),
    ...(tokens !== undefined ? { tokens: (i: number) => tokens(indices[i]) } : {}),
  };
}

/** In-memory source. */
export function arraySource(hidden: readonly HiddenStates[], labels: ArrayLike<number>): ExampleSource {
  if (hidden.length !== labels.length) throw new InvalidArgumentError(`${hidden.length} examples but ${labels.length} labels`, { field: "labels" });
  return { size: hidden.length, labels: Int32Array.from(labels as ArrayLike<number>), get: (i) => hidden[i], tokens: (i) => hidden[i].tokens };
}

export type SelectionMetric = "accuracy" | "f1" | "macro-f1";

/**
 * The metric reported and used to pick the decision rule: F1 of the positive class for binary safety tasks,
 * accuracy for sentiment and topic tasks and for every multi-class task. A binary task of unknown kind gets
 * F1 when its classes are imbalanced (the minority below a third of the examples, given `labels`) and
 * accuracy when they are balanced: F1 of an arbitrary "class 1" on balanced data rewards predicting it always.
 */
export function defaultSelectionMetric(classes: number, task?: DatasetTask, labels?: ArrayLike<number>): SelectionMetric {
  if (classes !== 2) return "accuracy";
  if (task === "sentiment" || task === "topic") return "accuracy";
  if (task === "safety") return "f1";
  if (labels !== undefined && labels.length > 0) {
    let pos = 0;
    for (let i = 0; i < labels.length; i++) if (labels[i] === 1) pos++;
    const minority = Math.min(pos, labels.length - pos) / labels.length;
    return minority < 1 / 3 ? "f1" : "accuracy";
  }
  return "f1";
}

/** Default peak learning rate: 1e-2 for the small heads on standardised inputs (pooling, fixed, scoring), 1e-3 for MHA. */
export function defaultLearningRate(kind: ProbeConfig["kind"]): number {
  return kind === "mha" ? 1e-3 : 1e-2;
}

export interface TrainOptions {
  /** Peak learning rate (default defaultLearningRate(kind): 1e-2, MHA 1e-3). */
  lr?: number;
  /** Default 32. */
  batchSize?: number;
  /** AdamW decoupled weight decay (default 0.01). */
  weightDecay?: number;
  /** Maximum epochs (default 10 for MHA, 20 for scoring; 30 for pooling and fixed probes with headSolver "adam"). */
  epochs?: number;
  /** Fraction of the steps spent in linear warm-up (default 0.06). */
  warmup?: number;
  /** Stop after this many epochs without a lower validation loss (default 3; 5 for pooling and fixed). */
  patience?: number;
  /** Reported metric, "f1" (binary, positive class 1; also tunes the threshold), "accuracy", "macro-f1". Default: defaultSelectionMetric(classes, task, labels). */
  metric?: SelectionMetric;
  /** The dataset's task kind (from the feature-cache manifest), which picks the default metric. */
  task?: DatasetTask;
  /** Per-class loss weights, or "balanced" (N / (C·n_c)). */
  classWeights?: number[] | "balanced";
  seed?: number;
  /** Validation set; when absent, a stratified `valFraction` of train (default 0.1), seeded. */
  validation?: ExampleSource;
  valFraction?: number;
  /**
   * Early stopping (and the best epoch) on validation "loss" (default: the class-weighted cross-entropy, smooth
   * even on a few dozen positives) or on the selection "metric" (argmax decisions, the paper's choice).
   */
  earlyStopping?: "loss" | "metric";
  /**
   * Pooling and fixed probes (a linear head on vectors that do not change): "exact" (default) fits the head
   * as an L2 logistic regression to convergence, the L2 weight chosen by cross-validated loss; "adam" trains it
   * like the other probes (lr, batch, epochs apply).
   */
  headSolver?: "exact" | "adam";
  /** Binary: choose the decision threshold on validation for max F1 (default) or a target FPR. */
  targetFpr?: number;
  /** Exact heads: folds of the cross-validation that picks λ (default 5; below 2, λ on the validation split alone). */
  cvFolds?: number;
  /**
   * Trainable aggregators: draw each mini-batch from examples of similar length (shuffled, sorted by length in
   * windows of 16 batches, then the batches shuffled), so padding adds little. Default on for MHA, whose cost
   * grows with the padded length squared (random batches of ToxicChat prompts cost 5× the sorted ones).
   */
  lengthGrouped?: boolean;
  /** Called after each optimiser step and each epoch. */
  onProgress?: (p: TrainProgress) => void;
}

export interface TrainProgress {
  epoch: number;
  step: number;
  totalSteps: number;
  examples: number;
  loss: number;
  /** Set at epoch ends. */
  valMetric?: number;
}

export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  valLoss: number;
  valMetric: number;
}

export interface TrainResult {
  probe: Probe;
  /** Validation selection metric (argmax decisions) at the best epoch. */
  valMetric: number;
  /** Validation cross-entropy (class-weighted as in training) at the best epoch. */
  valLoss: number;
  metric: SelectionMetric;
  /**
   * Metrics of the restored (best) probe on validation. With a tuned threshold, its threshold-dependent
   * numbers (F1, precision, recall, accuracy) are cross-fitted: each half of the validation set is decided
   * with the threshold tuned on the other half, so no reported number comes from the data its threshold was
   * picked on.
   */
  validation: MetricReport;
  /** Binary tasks: decision threshold on P(class 1). */
  threshold?: number;
  bestEpoch: number;
  history: EpochRecord[];
  /** Training examples processed per second (forward + backward + update). */
  examplesPerSecond: number;
  hyper: ResolvedTrainOptions;
  /** Exact heads: the chosen λ's cross-validated log-loss over train ∪ validation (what the fixed baseline compares layers by). */
  cvLoss?: number;
}

export interface ResolvedTrainOptions {
  lr: number;
  batchSize: number;
  weightDecay: number;
  epochs: number;
  warmup: number;
  patience: number;
  metric: SelectionMetric;
  earlyStopping: "loss" | "metric";
  standardize: boolean;
  lengthGrouped: boolean;
  /** Head-only probes: "exact" L2 logistic regression or "adam" epochs. */
  headSolver: "exact" | "adam";
  /** The L2 weight the exact head solver chose by cross-validation. */
  lambda?: number;
  seed: number;
  classWeights?: number[];
}

/** Seeded stratified split: about `fraction` of each class goes to validation (at least one if it has two). */
export function stratifiedSplit(labels: ArrayLike<number>, fraction: number, seed: number): { train: number[]; val: number[] } {
  const rng = new Rng(seed ^ 0x5eed);
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i];
    if (!byClass.has(c)) byClass.set(c, []);
    byClass.get(c)!.push(i);
  }
  const train: number[] = [], val: number[] = [];
  for (const c of [...byClass.keys()].sort((a, b) => a - b)) {
    const idx = rng.shuffle(byClass.get(c)!.slice());
    const k = idx.length >= 2 ? Math.max(1, Math.round(idx.length * fraction)) : 0;
    val.push(...idx.slice(0, k));
    train.push(...idx.slice(k));
  }
  return { train: train.sort((a, b) => a - b), val: val.sort((a, b) => a - b) };
}

/**
 * The training and validation sets: `options.validation` when given (train as is), else a seeded stratified
 * `valFraction` (default 0.1) of `train` held out.
 */
export function withValidation(
  train: ExampleSource,
  options: Pick<TrainOptions, "validation" | "valFraction">,
  seed: number,
): { train: ExampleSource; validation: ExampleSource } {
  if (options.validation !== undefined) return { train, validation: options.validation };
  const split = stratifiedSplit(train.labels, options.valFraction ?? 0.1, seed);
  return { train: subset(train, split.train), validation: subset(train, split.val) };
}

/** Learning rate at step t (0-based) of `total`: linear warm-up, then cosine decay to 0. */
export function cosineLr(peak: number, t: number, total: number, warmupFraction: number): number {
  const warm = Math.max(1, Math.ceil(total * warmupFraction));
  if (t < warm) return (peak * (t + 1)) / warm;
  const p = (t - warm) / Math.max(1, total - warm);
  return peak * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, p)));
}

/** AdamW with decoupled weight decay (Loshchilov & Hutter), β = (0.9, 0.999), ε = 1e-8. */
export class AdamW {
  private readonly m = new Map<Tensor, Float64Array>();
  private readonly v = new Map<Tensor, Float64Array>();
  private t = 0;
  constructor(
    private readonly params: Tensor[],
    private readonly weightDecay: number,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly eps = 1e-8,
  ) {
    for (const p of params) {
      this.m.set(p, new Float64Array(p.size)); // same shape as p
      this.v.set(p, new Float64Array(p.size));
    }
  }
  step(lr: number): void {
    this.t++;
    const c1 = 1 - this.beta1 ** this.t, c2 = 1 - this.beta2 ** this.t;
    for (const p of this.params) {
      const g = p.grad;
      if (g === null) continue;
      const m = this.m.get(p)!, v = this.v.get(p)!;
      const decay = 1 - lr * this.weightDecay;
      for (let i = 0; i < p.size; i++) {
        m[i] = this.beta1 * m[i] + (1 - this.beta1) * g[i];
        v[i] = this.beta2 * v[i] + (1 - this.beta2) * g[i] * g[i];
        p.data[i] = p.data[i] * decay - (lr * (m[i] / c1)) / (Math.sqrt(v[i] / c2) + this.eps);
      }
    }
  }
  zeroGrad(): void {
    for (const p of this.params) p.grad = null;
  }
}

function classCount(src: ExampleSource): number {
  let max = 0;
  for (let i = 0; i < src.size; i++) max = Math.max(max, src.labels[i]);
  return max + 1;
}

/** Aggregated vectors [N, d] of a non-trainable aggregator (pooling, fixed): computed once, reused every epoch. */
async function precompute(probe: Probe, src: ExampleSource, batchSize: number): Promise<Float32Array> {
  const d = probe.shape.dim;
  const out = new Float32Array(src.size * d); // [N, d]
  for (let s = 0; s < src.size; s += batchSize) {
    const hs: HiddenStates[] = [];
    for (let i = s; i < Math.min(src.size, s + batchSize); i++) hs.push(src.get(i));
    const tape = new Tape("f32", false);
    const { v } = await probe.aggregate(tape, makeBatch(hs));
    out.set(v.data, s * d);
  }
  return out;
}

/** The probe's class probabilities [N, C] on a source (uses precomputed vectors [N, d] when given). */
async function probabilities(probe: Probe, src: ExampleSource, batchSize: number, pre?: Float32Array): Promise<Float32Array> {
  const C = probe.shape.classes, d = probe.shape.dim;
  const out = new Float32Array(src.size * C); // [N, C]
  if (pre !== undefined) {
    for (let s = 0; s < src.size; s += batchSize) {
      const e = Math.min(src.size, s + batchSize);
      out.set((await probe.run({ aggregated: pre.subarray(s * d, e * d) })).probabilities, s * C);
    }
    return out;
  }
  const order = lengthOrder(src);
  for (let s = 0; s < src.size; s += batchSize) {
    const idx = order.slice(s, s + batchSize);
    const { probabilities } = await probe.run(idx.map((i) => src.get(i)));
    idx.forEach((i, r) => out.set(probabilities.subarray(r * C, (r + 1) * C), i * C));
  }
  return out;
}

/**
 * Example indices shortest first when the source knows its lengths (else 0..N-1): batches of neighbours pad least.
 * Whoever batches in this order puts each row back at its example's index.
 */
export function lengthOrder(src: ExampleSource): number[] {
  const order = Array.from({ length: src.size }, (_, i) => i);
  if (src.tokens !== undefined) {
    const lengths = Int32Array.from(order, (i) => src.tokens!(i)); // [N]
    order.sort((a, b) => lengths[a] - lengths[b]);
  }
  return order;
}

/**
 * Mini-batches of examples of similar length: `order` (already shuffled) cut into windows of 16 batches, each
 * window sorted by length and cut into batches, then the batches shuffled.
 */
export function lengthGroupedBatches(order: readonly number[], batchSize: number, tokens: (i: number) => number, rng: Rng): number[][] {
  const window = 16 * batchSize;
  const batches: number[][] = [];
  for (let w = 0; w < order.length; w += window) {
    const chunk = order.slice(w, w + window).sort((a, b) => tokens(a) - tokens(b));
    for (let s = 0; s < chunk.length; s += batchSize) batches.push(chunk.slice(s, s + batchSize));
  }
  rng.shuffle(batches);
  return batches;
}

function metricValue(r: MetricReport, metric: SelectionMetric): number {
  return metric === "f1" ? r.f1 ?? r.macroF1 : metric === "macro-f1" ? r.macroF1 : r.accuracy;
}

/**
 * Trains one probe. Without `options.validation`, a stratified split of `train` is held out. The returned
 * probe holds the weights of the best validation epoch.
 */
export async function trainProbe(
  config: ProbeConfig,
  train: ExampleSource,
  options: TrainOptions & { classes?: number } = {},
): Promise<TrainResult> {
  if (train.size < 2) throw new InvalidArgumentError(`need at least 2 training examples, got ${train.size}`, { field: "train" });
  const seed = options.seed ?? 0;
  const { train: trainSet, validation: valSet } = withValidation(train, options, seed);
  if (valSet.size === 0) throw new InvalidArgumentError("validation set is empty", { field: "validation" });
  const C = options.classes ?? Math.max(classCount(train), classCount(valSet), 2);
  checkClasses(trainSet, valSet, C);
  const first = trainSet.get(0);
  const headOnly = config.kind === "pooling" || config.kind === "fixed";
  const hyper: ResolvedTrainOptions = {
    lr: options.lr ?? defaultLearningRate(config.kind),
    batchSize: options.batchSize ?? 32,
    weightDecay: options.weightDecay ?? 0.01,
    // The scoring gate learns slowly from w = 0 (still improving at epoch 10 on SST-2, Emotion and ToxicChat
    // with stories260K); early stopping ends it sooner when it is done.
    epochs: options.epochs ?? (headOnly ? 30 : config.kind === "scoring" ? 20 : 10),
    warmup: options.warmup ?? 0.06,
    patience: options.patience ?? (headOnly ? 5 : 3),
    metric: options.metric ?? defaultSelectionMetric(C, options.task, train.labels),
    earlyStopping: options.earlyStopping ?? "loss",
    headSolver: options.headSolver ?? "exact",
    standardize: config.standardize !== false,
    lengthGrouped: options.lengthGrouped ?? config.kind === "mha",
    seed,
  };
  for (const [k, v] of Object.entries({ lr: hyper.lr, batchSize: hyper.batchSize, epochs: hyper.epochs })) {
    if (!(v > 0) || !Number.isFinite(v)) throw new InvalidArgumentError(`${k} must be a positive number, got ${v}`, { field: k });
  }
  if (options.classWeights === "balanced") {
    const counts = new Array<number>(C).fill(0);
    for (let i = 0; i < trainSet.size; i++) counts[trainSet.labels[i]]++;
    hyper.classWeights = counts.map((n) => (n > 0 ? trainSet.size / (C * n) : 0));
  } else if (options.classWeights !== undefined) {
    if (options.classWeights.length !== C) throw new InvalidArgumentError(`${options.classWeights.length} class weights for ${C} classes`, { field: "classWeights" });
    if (options.classWeights.some((w) => !(w >= 0) || !Number.isFinite(w)) || options.classWeights.every((w) => w === 0)) {
      throw new InvalidArgumentError(`class weights must be finite, ≥ 0 and not all 0, got ${options.classWeights.join(",")}`, { field: "classWeights" });
    }
    hyper.classWeights = options.classWeights.slice();
  }

  // Standardised inputs by default (see ProbeConfig.standardize); `standardize: false` keeps raw states.
  const cfg: ProbeConfig = { ...config, standardize: hyper.standardize };
  const probe = new Probe(cfg, { layers: first.layers, dim: first.dim, classes: C }, { seed });
  if (cfg.standardize === true) probe.norm = inputStatistics((i) => trainSet.get(i), trainSet.size);
  const params = [...probe.params().values()].filter((p) => probe.aggregator.trainable || p.name!.startsWith("head."));
  const opt = new AdamW(params, hyper.weightDecay);
  const rng = new Rng(seed * 7919 + 17);
  const B = hyper.batchSize;
  const stepsPerEpoch = Math.ceil(trainSet.size / B);
  const totalSteps = stepsPerEpoch * hyper.epochs;
  const preTrain = probe.aggregator.trainable ? undefined : await precompute(probe, trainSet, 64);
  const preVal = probe.aggregator.trainable ? undefined : await precompute(probe, valSet, 64);
  const d = probe.shape.dim;

  let best = -Infinity, bestEpoch = 0, step = 0, seen = 0, trainMs = 0;
  let bestState = snapshot(params);
  const history: EpochRecord[] = [];
  const order = Array.from({ length: trainSet.size }, (_, i) => i);
  const grouped = hyper.lengthGrouped && preTrain === undefined // [N_train] tokens per example
    ? Int32Array.from(order, (i) => (trainSet.tokens !== undefined ? trainSet.tokens(i) : trainSet.get(i).tokens)) : undefined;
  const scratch: BatchScratch = { buffer: new Float32Array(0) };
  const exact = preTrain !== undefined && hyper.headSolver === "exact";
  let cvLoss: number | undefined;
  if (exact) {
    // A head on fixed vectors is a convex problem: solve it (L2 logistic regression) instead of approximating it
    // with a few epochs of Adam. λ by K-fold cross-validation over train ∪ validation (every labelled row scores
    // once), then the head is fitted on train alone, so validation stays unseen for the threshold.
    const t0 = performance.now();
    const folds = options.cvFolds ?? 5;
    const trainDesign = denseDesign(preTrain, trainSet.size, d);
    let model: LogRegModel;
    if (folds >= 2) {
      const all = new Float32Array((trainSet.size + valSet.size) * d); // [N_train + N_val, d]
      all.set(preTrain);
      all.set(preVal!, trainSet.size * d);
      const yAll = Int32Array.from({ length: trainSet.size + valSet.size }, (_, i) => (i < trainSet.size ? trainSet.labels[i] : valSet.labels[i - trainSet.size]));
      const cv = crossValidatedLambda(all, yAll.length, d, yAll, C, { folds, seed, weights: hyper.classWeights });
      cvLoss = cv.cvLoss;
      model = fitLogReg(trainDesign, trainSet.labels, C, { penalty: "l2", lambda: cv.lambda, weights: hyper.classWeights });
    } else {
      // the path's fits are already on train alone: keep the one validation chose
      model = fitLogRegPath(trainDesign, trainSet.labels, denseDesign(preVal!, valSet.size, d), valSet.labels, C, { penalty: "l2", weights: hyper.classWeights }).model;
    }
    trainMs = performance.now() - t0;
    probe.headWeight.data.set(model.W); // [d, C] both
    probe.headBias.data.set(model.b);
    seen = trainSet.size;
    hyper.lambda = model.lambda;
    const probs = await probabilities(probe, valSet, 64, preVal);
    const valLoss = crossEntropyOf(valSet.labels, probs, C, hyper.classWeights);
    history.push({ epoch: 1, trainLoss: NaN, valLoss, valMetric: metricValue(evaluate(valSet.labels, probs, C), hyper.metric) });
    bestEpoch = 1;
    bestState = snapshot(params);
    options.onProgress?.({ epoch: 1, step: 1, totalSteps: 1, examples: seen, loss: cvLoss ?? valLoss });
  }
  for (let epoch = 1; !exact && epoch <= hyper.epochs; epoch++) {
    rng.shuffle(order);
    let lossSum = 0;
    const t0 = performance.now();
    const batches = grouped !== undefined ? lengthGroupedBatches(order, B, (i) => grouped[i], rng) : undefined;
    for (let s = 0; s < order.length; s += B) {
      const idx = batches !== undefined ? batches[s / B] : order.slice(s, s + B);
      const labels = idx.map((i) => trainSet.labels[i]);
      const tape = new Tape("f32");
      let logits: Tensor;
      if (preTrain !== undefined) {
        const v = new Float32Array(idx.length * d); // [B, d]
        idx.forEach((i, r) => v.set(preTrain.subarray(i * d, (i + 1) * d), r * d));
        logits = await probe.head(tape, tape.constant([idx.length, d], v));
      } else {
        logits = (await probe.forward(tape, makeBatch(idx.map((i) => trainSet.get(i)), "f32", scratch))).logits;
      }
      const loss = tape.crossEntropy(logits, labels, hyper.classWeights);
      if (!Number.isFinite(loss.data[0])) {
        // Divergence (too high a learning rate) or non-finite features: stop here instead of saving NaN weights.
        throw new NonFiniteError(`training diverged: the loss is ${loss.data[0]} at epoch ${epoch}, step ${step + 1} of ${totalSteps} (try a lower --lr)`, { field: "loss" });
      }
      opt.zeroGrad();
      await tape.backward(loss);
      opt.step(cosineLr(hyper.lr, step, totalSteps, hyper.warmup));
      step++;
      seen += idx.length;
      lossSum += loss.data[0] * idx.length;
      options.onProgress?.({ epoch, step, totalSteps, examples: seen, loss: loss.data[0] });
    }
    trainMs += performance.now() - t0;
    const probs = await probabilities(probe, valSet, 64, preVal);
    const valLoss = crossEntropyOf(valSet.labels, probs, C, hyper.classWeights);
    const valMetric = metricValue(evaluate(valSet.labels, probs, C), hyper.metric);
    history.push({ epoch, trainLoss: lossSum / trainSet.size, valLoss, valMetric });
    options.onProgress?.({ epoch, step, totalSteps, examples: seen, loss: lossSum / trainSet.size, valMetric });
    const value = hyper.earlyStopping === "loss" ? -valLoss : valMetric;
    if (value > best) {
      best = value;
      bestEpoch = epoch;
      bestState = snapshot(params);
    } else if (epoch - bestEpoch >= hyper.patience) break;
  }
  restore(params, bestState);
  for (const p of params) {
    if (!p.data.every(Number.isFinite)) throw new NonFiniteError(`training diverged: parameter ${p.name} holds NaN/Inf values (try a lower --lr)`, { field: p.name });
  }
  const probs = await probabilities(probe, valSet, 64, preVal);
  // The threshold serves F1-selected (safety-style) tasks; accuracy/macro-F1 tasks decide by argmax.
  const tuned = C === 2 && hyper.metric === "f1";
  const threshold = tuned ? chooseThreshold(valSet.labels, positiveScores(probs), { targetFpr: options.targetFpr }) : undefined;
  const bestRecord = history[bestEpoch - 1];
  return {
    probe,
    valMetric: bestRecord.valMetric,
    valLoss: bestRecord.valLoss,
    metric: hyper.metric,
    validation: tuned ? crossFittedReport(valSet.labels, probs, C, threshold!, seed, options.targetFpr) : evaluate(valSet.labels, probs, C),
    threshold,
    bestEpoch,
    history,
    examplesPerSecond: seen / Math.max(trainMs / 1000, 1e-9),
    hyper,
    ...(cvLoss !== undefined ? { cvLoss } : {}),
  };
}

/**
 * A probe needs at least two classes among its training examples, and every class that is trained on needs
 * validation examples (otherwise its recall, F1 and the threshold are measured on nothing).
 */
function checkClasses(trainSet: ExampleSource, valSet: ExampleSource, C: number): void {
  const inTrain = new Array<number>(C).fill(0), inVal = new Array<number>(C).fill(0);
  for (let i = 0; i < trainSet.size; i++) inTrain[trainSet.labels[i]]++;
  for (let i = 0; i < valSet.size; i++) inVal[valSet.labels[i]]++;
  const present = inTrain.filter((n) => n > 0).length;
  if (present < 2) {
    throw new InvalidArgumentError(`training examples hold ${present} class${present === 1 ? ` (class ${inTrain.findIndex((n) => n > 0)})` : "es"}: a probe needs at least 2`, { field: "labels" });
  }
  const noVal = inTrain.findIndex((n, k) => n > 0 && inVal[k] === 0);
  if (noVal >= 0) {
    throw new InvalidArgumentError(`class ${noVal} has ${inTrain[noVal]} training examples but no validation examples (it needs at least 2 examples, or a --val-features cache that has it)`, { field: "validation" });
  }
}

/**
 * Metrics at a tuned threshold, cross-fitted: the validation set is split in two stratified halves, each half
 * is decided with the threshold tuned on the other, and the decisions are scored together. Threshold-free
 * numbers (AUPRC, ROC-AUC, ECE) use every example; `threshold` (tuned on all of it) is what the probe keeps.
 */
export function crossFittedReport(labels: ArrayLike<number>, probs: Float32Array, C: number, threshold: number, seed: number, targetFpr?: number): MetricReport {
  const full = evaluate(labels, probs, C, threshold);
  const { train: a, val: b } = stratifiedSplit(labels, 0.5, seed + 31);
  if (a.length === 0 || b.length === 0) return full;
  const scores = positiveScores(probs);
  const preds = new Int32Array(labels.length); // [N] decisions with the other half's threshold
  for (const [fit, apply] of [[a, b], [b, a]] as const) {
    const t = chooseThreshold(fit.map((i) => labels[i]), fit.map((i) => scores[i]), { targetFpr });
    for (const i of apply) preds[i] = scores[i] >= t ? 1 : 0;
  }
  const s = classScores(labels, preds, 1);
  return { ...full, accuracy: accuracy(labels, preds), macroF1: macroF1(labels, preds, C), f1: s.f1, precision: s.precision, recall: s.recall };
}

/** Mean (class-weighted) cross-entropy of probabilities [N, C]. */
function crossEntropyOf(labels: ArrayLike<number>, probs: Float32Array, C: number, weights?: number[]): number {
  let sum = 0, wsum = 0;
  for (let i = 0; i < labels.length; i++) {
    const w = weights?.[labels[i]] ?? 1;
    sum -= w * Math.log(Math.max(probs[i * C + labels[i]], 1e-12));
    wsum += w;
  }
  return sum / wsum;
}

function snapshot(params: Tensor[]): Float32Array[] {
  return params.map((p) => Float32Array.from(p.data));
}

function restore(params: Tensor[], state: Float32Array[]): void {
  params.forEach((p, i) => p.data.set(state[i]));
}

/** Class probabilities [N, C] of a trained probe on a source. */
export async function predictSource(probe: Probe, src: ExampleSource, batchSize = 32): Promise<Float32Array> {
  return probabilities(probe, src, batchSize);
}
