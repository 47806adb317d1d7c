/** `onepass train`: train a probe on a feature cache (optionally with a random hyper-parameter search). */
import type { Command } from "../command.js";
import { ProgressBar } from "../progress.js";
import { realpathSync } from "node:fs";
import { resolve } from "node:path";
import { FeatureCacheError, InvalidArgumentError } from "../../errors.js";
import { openFeatureCache, tokenizationDifferences } from "../../data/features.js";
import { cacheSource } from "../../probe/cache-source.js";
import { numberFlag, oneOf, parseFlags, required } from "../args.js";
import { checkProbeTarget, saveProbe } from "../../probe/artifact.js";
import type { ProbeConfig } from "../../probe/probe.js";
import { searchProbe, meanStd } from "../../probe/search.js";
import { defaultSelectionMetric, trainProbe, type SelectionMetric, type TrainOptions, type TrainResult } from "../../probe/train.js";

const usage = `usage: onepass train --features DIR --probe pooling|scoring|mha|fixed --out P [options]

Trains a probe on hidden states cached by \`onepass extract\` and saves it as a folder P
(weights.safetensors + probe.json with the model fingerprint, label names, threshold and metrics).

  --features DIR        training feature cache
  --val-features DIR    validation cache (default: a stratified, seeded 10% of the training cache)
  --probe KIND          pooling | scoring | mha | fixed
  --pool mean|max       pooling and mha (default mean)
  --layer l             fixed: layer 0..L (default L, the final layer)
  --token last|mean|max fixed: the last token, or the mean / elementwise max over tokens (default last)
  --heads H             mha: heads (default 8)
  --downcast f          mha: downcast factor, Q/K/V width d/f (default 8)
  --lr X                peak learning rate (default 1e-2; mha 1e-3)
  --batch N             batch size (default 32)
  --weight-decay X      AdamW weight decay (default 0.01)
  --epochs N            at most N epochs (default: mha 10, scoring 20, pooling/fixed with adam 30),
                        early stopping on validation
  --patience N          epochs without improvement before stopping (default 3; pooling/fixed 5)
  --early-stopping S    loss (default: validation cross-entropy) | metric (the selection metric, argmax)
  --head-solver S       pooling/fixed: exact (default: L2 logistic regression solved to convergence, its
                        weight chosen on validation loss; --lr/--batch/--epochs do not apply) | adam
  --no-standardize      train on raw hidden states (default: standardised per layer and dimension with
                        training-set statistics saved in the probe)
  --metric M            f1 | accuracy | macro-f1 (default: from the dataset's task kind in the cache manifest:
                        safety → f1, sentiment/topic → accuracy; >2 classes → accuracy; unknown binary →
                        f1 when the minority class is under a third of the examples, else accuracy)
  --class-weights W     balanced, or comma-separated weights per class
  --target-fpr X        binary: threshold for this validation FPR (default: max validation F1)
  --search N            random search with N configurations (the first is the defaults; lr 1e-5…1e-1,
                        the paper's other ranges), compared on validation loss
  --seeds K             re-run the (best) configuration with K seeds → mean ± std (default 3 with --search, else 1)
  --seed S              base seed (default 0)
  --target prompt|response
                        what the probe reads (default prompt). response: the cache must come from
                        \`extract --target response\`; the probe then moderates answers token by token
                        (generateWithProbes({ response }), CLI generate --response-probe)
  --quiet               no progress bar
  --out P               probe folder to write
`;

const FLAGS = {
  features: { type: "string" }, "val-features": { type: "string" }, probe: { type: "string" }, pool: { type: "string" },
  layer: { type: "string" }, token: { type: "string" }, heads: { type: "string" }, downcast: { type: "string" },
  lr: { type: "string" }, batch: { type: "string" }, "weight-decay": { type: "string" }, epochs: { type: "string" },
  patience: { type: "string" }, metric: { type: "string" }, "class-weights": { type: "string" }, "target-fpr": { type: "string" },
  "early-stopping": { type: "string" }, "head-solver": { type: "string" }, "no-standardize": { type: "boolean" },
  search: { type: "string" }, seeds: { type: "string" }, seed: { type: "string" }, quiet: { type: "boolean" }, out: { type: "string" },
  target: { type: "string" },
} as const;

/** True when two paths name the same folder (after symlinks). */
function sameFolder(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return resolve(a) === resolve(b);
  }
}

export const trainCommand: Command = {
  name: "train",
  summary: "train a probe (pooling, scoring, mha, fixed) on cached hidden states",
  usage,
  async run(argv) {
    const v = parseFlags(argv, FLAGS, usage);
    const featuresDir = required("features", v.features, usage);
    const out = required("out", v.out, usage);
    const kind = required("probe", oneOf("probe", v.probe, ["pooling", "scoring", "mha", "fixed"] as const), usage);
    const config: ProbeConfig = { kind };
    if (v["no-standardize"] === true) config.standardize = false;
    const pool = oneOf("pool", v.pool, ["mean", "max"] as const);
    if (pool !== undefined) config.pool = pool;
    const layer = numberFlag("layer", v.layer, { int: true, min: 0 });
    if (layer !== undefined) config.layer = layer;
    const token = oneOf("token", v.token, ["last", "mean", "max"] as const);
    if (token !== undefined) config.token = token;
    const heads = numberFlag("heads", v.heads, { int: true, min: 1 });
    if (heads !== undefined) config.heads = heads;
    const downcast = numberFlag("downcast", v.downcast, { int: true, min: 1 });
    if (downcast !== undefined) config.downcast = downcast;
    let classWeights: TrainOptions["classWeights"];
    if (v["class-weights"] === "balanced") classWeights = "balanced";
    else if (v["class-weights"] !== undefined) classWeights = v["class-weights"].split(",").map((s, i) => numberFlag(`class-weights[${i}]`, s, { min: 0 })!);
    const search = numberFlag("search", v.search, { int: true, min: 1 });
    const seeds = numberFlag("seeds", v.seeds, { int: true, min: 1 }) ?? (search !== undefined ? 3 : 1);
    const seed = numberFlag("seed", v.seed, { int: true, min: 0 }) ?? 0;

    // Flags that do not apply to this probe kind are errors, not silently ignored.
    const onlyFor = (flag: string, given: unknown, kinds: readonly string[]) => {
      if (given !== undefined && !kinds.includes(kind)) throw new InvalidArgumentError(`applies to ${kinds.join(" and ")} probes, not ${kind}`, { field: `--${flag}` });
    };
    onlyFor("pool", v.pool, ["pooling", "mha"]);
    onlyFor("layer", v.layer, ["fixed"]);
    onlyFor("token", v.token, ["fixed"]);
    onlyFor("heads", v.heads, ["mha"]);
    onlyFor("downcast", v.downcast, ["mha"]);
    if (v["val-features"] !== undefined && sameFolder(v["val-features"], featuresDir)) {
      throw new InvalidArgumentError("is the training cache itself: validation must be held-out data (leave it out for a stratified 10% split)", { field: "--val-features" });
    }
    checkProbeTarget(resolve(out), out); // refuse a precious --out before training, not after
    const cache = openFeatureCache(featuresDir);
    const valCache = v["val-features"] !== undefined ? openFeatureCache(v["val-features"]) : undefined;
    try {
      const m = cache.manifest;
      if (valCache !== undefined && valCache.manifest.model.fingerprint !== m.model.fingerprint) {
        throw new InvalidArgumentError("validation features come from another model than the training features", { file: valCache.dir, field: "model.fingerprint" });
      }
      if (valCache !== undefined && valCache.labelNames.join("\u0000") !== cache.labelNames.join("\u0000")) {
        throw new InvalidArgumentError(`validation label names [${valCache.labelNames}] differ from training [${cache.labelNames}]`, { file: valCache.dir, field: "labelNames" });
      }
      const diff = valCache === undefined ? [] : tokenizationDifferences(m.tokenization, valCache.manifest.tokenization, ["the training features", "the validation features"]);
      if (diff.length > 0) throw new FeatureCacheError(`tokenised unlike the training features: ${diff.join("; ")}`, { file: valCache!.dir, field: "tokenization" });
      // a prompt probe trained on response states (or the reverse) would read tokens unlike those it meets live
      const target = oneOf("target", v.target, ["prompt", "response"] as const) ?? "prompt";
      for (const c of [cache, valCache]) {
        if (c === undefined) continue;
        const has = c.manifest.tokenization.target ?? "prompt";
        if (has !== target) {
          throw new InvalidArgumentError(`--target ${target}, but ${c.dir} holds ${has} states (extract --target ${target})`, { file: c.dir, field: "tokenization.target" });
        }
      }
      const train = cacheSource(cache, config);
      const metricFlag = oneOf("metric", v.metric, ["f1", "accuracy", "macro-f1"] as const) as SelectionMetric | undefined;
      const task = m.dataset.task;
      const metric = metricFlag ?? defaultSelectionMetric(cache.labelNames.length, task, cache.labels);
      if (v["target-fpr"] !== undefined && (cache.labelNames.length !== 2 || metric !== "f1")) {
        throw new InvalidArgumentError(`sets the decision threshold of binary probes selected on F1; this run has ${cache.labelNames.length} classes and selects on ${metric}`, { field: "--target-fpr" });
      }
      const why = metricFlag !== undefined ? "--metric" : `default for ${task !== undefined ? `a ${task} task` : "a dataset of unknown kind"} with ${cache.labelNames.length} classes${task === undefined && cache.labelNames.length === 2 ? ` (${metric === "f1" ? "imbalanced" : "balanced"})` : ""}`;
      process.stderr.write(`train: selecting on validation ${metric} (${why})\n`);
      const options: TrainOptions & { classes: number } = {
        classes: cache.labelNames.length,
        lr: numberFlag("lr", v.lr, { min: 0 }),
        batchSize: numberFlag("batch", v.batch, { int: true, min: 1 }),
        weightDecay: numberFlag("weight-decay", v["weight-decay"], { min: 0 }),
        epochs: numberFlag("epochs", v.epochs, { int: true, min: 1 }),
        patience: numberFlag("patience", v.patience, { int: true, min: 1 }),
        metric,
        earlyStopping: oneOf("early-stopping", v["early-stopping"], ["loss", "metric"] as const),
        headSolver: oneOf("head-solver", v["head-solver"], ["exact", "adam"] as const),
        classWeights,
        targetFpr: numberFlag("target-fpr", v["target-fpr"], { min: 0, max: 1 }),
        validation: valCache !== undefined ? cacheSource(valCache, config) : undefined,
        seed,
      };
      for (const k of Object.keys(options) as (keyof typeof options)[]) if (options[k] === undefined) delete options[k];
      const quiet = v.quiet === true;
      let result: TrainResult;
      let values: number[];
      if (search !== undefined) {
        const bar = new ProgressBar({ total: search, label: `search ${kind}`, unit: "cfg", enabled: !quiet });
        const s = await searchProbe(kind, train, { ...options, budget: search, seeds, seed, base: config, onTrial: (i) => bar.update(i + 1) });
        bar.finish();
        result = s.bestRun;
        values = s.runs.map((r) => r.valMetric);
        process.stderr.write(`best of ${search}: ${JSON.stringify({ ...s.best.config, lr: +s.best.lr.toPrecision(3), batch: s.best.batchSize, wd: +s.best.weightDecay.toFixed(4) })}\n`);
      } else {
        const runs: TrainResult[] = [];
        for (let k = 0; k < seeds; k++) {
          let bar: ProgressBar | undefined;
          const r = await trainProbe(config, train, {
            ...options,
            seed: seed + k,
            onProgress: (p) => {
              bar ??= new ProgressBar({ total: p.totalSteps, label: `train ${kind}${seeds > 1 ? ` seed ${seed + k}` : ""}`, unit: "step", enabled: !quiet });
              bar.update(p.step);
            },
          });
          bar?.finish();
          runs.push(r);
        }
        values = runs.map((r) => r.valMetric);
        result = runs.reduce((a, b) => (b.valLoss < a.valLoss ? b : a));
      }
      const { mean, std } = meanStd(values);
      saveProbe(out, result.probe, {
        labelNames: cache.labelNames,
        model: { fingerprint: m.model.fingerprint, name: m.model.name, blocks: m.model.layers - 1, dim: m.model.dim },
        threshold: result.threshold,
        hyper: { ...result.hyper, bestEpoch: result.bestEpoch, history: result.history, features: featuresDir, examples: cache.size },
        validation: result.validation,
        tokenization: m.tokenization,
        ...(values.length > 1 ? { seeds: { metric: result.metric, mean, std, values } } : {}),
      });
      process.stdout.write(`${out}: ${kind} probe, ${result.probe.parameterCount()} aggregator params (+${result.probe.parameterCount({ includeHead: true }) - result.probe.parameterCount()} head)\n` + trainSummary(result, values, mean, std, cache.labelNames[1]) + "\n");
      return 0;
    } finally {
      cache.close();
      valCache?.close();
    }
  },
};

/**
 * The result lines of a training run, saying what each number is: the selection metric is computed from the
 * argmax prediction at the best epoch; the "at threshold" numbers use the decision threshold tuned afterwards
 * on the same validation set (binary F1-selected tasks only), which is what the saved probe applies.
 */
export function trainSummary(result: TrainResult, values: number[], mean: number, std: number, positiveName = "class 1"): string {
  const vm = result.validation;
  const seeds = values.length > 1 ? ` (mean ± std over ${values.length} seeds: ${mean.toFixed(4)} ± ${std.toFixed(4)})` : "";
  const how = result.hyper.lambda !== undefined
    ? `exact L2 logistic-regression head, λ ${result.hyper.lambda.toExponential(1)} by ${result.cvLoss !== undefined ? "cross-validated" : "validation"} loss`
    : `best epoch ${result.bestEpoch} by validation ${result.hyper.earlyStopping}`;
  const lines = [`validation ${result.metric} ${result.valMetric.toFixed(4)} (argmax, ${how})${seeds}`];
  const decision = result.threshold !== undefined ? `at tuned threshold P(${positiveName}) ≥ ${result.threshold.toFixed(4)} (cross-fitted: each half decided by the other half's threshold)` : "at argmax";
  let m = `validation ${decision}: accuracy ${vm.accuracy.toFixed(4)}, macro-F1 ${vm.macroF1.toFixed(4)}`;
  if (vm.f1 !== undefined) m += `, F1 ${vm.f1.toFixed(4)}; threshold-free AUPRC ${vm.auprc!.toFixed(4)}`;
  lines.push(m);
  lines.push(`${result.examplesPerSecond.toFixed(0)} training examples/s`);
  return lines.join("\n");
}
