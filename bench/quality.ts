// The paper's quality table on one model: probes and baselines trained on the same train/validation split
// per seed, scored once on the test split; mean ± std over seeds. Resumable: every (task, method, seed)
// result is written to results.json as soon as it exists, and a rerun skips what is there.
//
//   node dist/bench/quality.js [--model M] [--data-dir D] [--tasks sst2,emotion,toxicchat] [--seeds 3]
//        [--methods pooling,scoring,fixed-last,fixed-mean,muli,prompting,tfidf] [--work DIR] [--out DIR]
//
// Hidden states are cut at 256 tokens (--max-tokens). Validation: a seeded stratified 10% of train.
// --table-only rewrites quality.md from quality.json without running anything (e.g. after a cut-short run).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cpus } from "node:os";
import { Engine } from "../src/engine/engine.js";
import { engineSource } from "../src/data/source.js";
import { loadPreset, type Dataset } from "../src/data/datasets.js";
import { extractFeatures, openFeatureCache, type FeatureCache } from "../src/data/features.js";
import { cacheSource } from "../src/probe/cache-source.js";
import { trainProbe, predictSource, stratifiedSplit, subset, type TrainResult } from "../src/probe/train.js";
import { evaluate, chooseThreshold, positiveScores, type MetricReport } from "../src/probe/metrics.js";
import { meanStd } from "../src/probe/search.js";
import { bestFixedLayer } from "../src/baselines/fixed.js";
import { fitMuli, predictMuli } from "../src/baselines/muli.js";
import { fitTfidf, predictTfidf } from "../src/baselines/tfidf.js";
import { promptScores } from "../src/baselines/prompting.js";
import { softmaxRows } from "../src/probe/probe.js";
import { writeFileAtomic } from "../src/util/atomic.js";
import { ProgressBar } from "../src/cli/progress.js";
import { arg } from "./common.js";

const str = (name: string, fallback: string) => { const i = process.argv.indexOf(`--${name}`); return i >= 0 ? process.argv[i + 1] : fallback; };
const model = str("model", "");
const dataDir = str("data-dir", process.env.ONEPASS_DATA_DIR ?? "../shared/data");
const tasks = str("tasks", "sst2,emotion,toxicchat").split(",");
const methods = str("methods", "pooling,scoring,fixed-last,fixed-mean,muli,prompting,tfidf").split(",");
const seeds = arg("seeds", 3);
const maxTokens = arg("max-tokens", 256);
const work = str("work", ".onepass-cache/bench-quality");
const out = str("out", "results");
if (dataDir.includes("holdout")) throw new Error("the quality benchmark never reads the holdout sets");

/** What each task reports: safety → F1 (threshold tuned on validation) and AUPRC; others → accuracy. */
const TASKS: Record<string, { metric: "accuracy" | "f1"; labelWords: string[]; template: string }> = {
  sst2: { metric: "accuracy", labelWords: ["negative", "positive"], template: "Review: {text}\nSentiment (positive or negative):" },
  emotion: { metric: "accuracy", labelWords: ["sadness", "joy", "love", "anger", "fear", "surprise"], template: "Text: {text}\nEmotion (sadness, joy, love, anger, fear or surprise):" },
  toxicchat: { metric: "f1", labelWords: ["safe", "toxic"], template: "Message: {text}\nIs this message safe or toxic? Answer:" },
};

interface Run { task: string; method: string; metric: "accuracy" | "f1"; seed: number; test: MetricReport; params: number; note?: string; seconds: number }
mkdirSync(work, { recursive: true });
mkdirSync(out, { recursive: true });
const resultsPath = join(out, "quality.json");
const state: { runs: Run[]; machine: string; started: string; wallSeconds: number } = existsSync(resultsPath)
  ? JSON.parse(readFileSync(resultsPath, "utf8"))
  : { runs: [], machine: `${cpus().length}× ${cpus()[0]?.model ?? "?"}`, started: new Date().toISOString(), wallSeconds: 0 };
const save = () => writeFileAtomic(resultsPath, JSON.stringify(state, null, 1) + "\n");
const done = (task: string, method: string, seed: number) => state.runs.some((r) => r.task === task && r.method === method && r.seed === seed);

const engine = await Engine.load(model === "" ? undefined : model, { taps: true });
const t0 = performance.now();
const wall0 = state.wallSeconds;

async function features(task: string, split: string, ds: Dataset): Promise<FeatureCache> {
  const dir = join(work, `${task}-${split}`);
  try {
    return openFeatureCache(dir);
  } catch {
    const bar = new ProgressBar({ total: ds.examples.length, label: `extract ${task}/${split}`, unit: "ex" });
    await extractFeatures({ source: engineSource(engine), examples: ds.examples, labelNames: ds.labelNames, outDir: dir, maxTokens, dataset: { name: task, split, task: ds.task }, onProgress: (p) => bar.update(p.done) });
    bar.finish();
    return openFeatureCache(dir);
  }
}

/** Per-text vectors [N, k] computed once and kept in the work folder (logits for MULI, label scores for prompting). */
async function cachedRows(file: string, n: number, k: number, compute: (onProgress: (d: number) => void) => Promise<Float32Array>, label: string): Promise<Float32Array> {
  const path = join(work, file);
  if (existsSync(path)) {
    const b = readFileSync(path);
    const a = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    if (a.length === n * k) return Float32Array.from(a);
  }
  const bar = new ProgressBar({ total: n, label, unit: "ex" });
  const rows = await compute((d) => bar.update(d));
  bar.finish();
  writeFileSync(path, Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength));
  return rows;
}

async function lastLogits(texts: readonly string[], onProgress: (d: number) => void): Promise<Float32Array> {
  // The logits at the first response position of the same prompt the probes see (cut at maxTokens).
  const V = engine.spec.vocabSize;
  const outRows = new Float32Array(texts.length * V); // [N, V]
  for (let i = 0; i < texts.length; i++) {
    let ids = engine.promptTokens({ prompt: texts[i] });
    if (ids.length > maxTokens) ids = ids.slice(0, maxTokens);
    const pass = await engine.forward(ids);
    outRows.set(pass.logits.subarray((pass.positions - 1) * V, pass.positions * V), i * V);
    onProgress(i + 1);
  }
  return outRows;
}

function score(task: string, yTest: ArrayLike<number>, probs: Float32Array, C: number, threshold?: number): MetricReport {
  return evaluate(yTest, probs, C, TASKS[task].metric === "f1" ? threshold : undefined);
}

// Seeds outermost: every task gets its first seed before any gets its second, so a cut-short run still fills
// the whole table.
interface Loaded { train: FeatureCache; test: FeatureCache; trainDs: Dataset; testDs: Dataset }
const loaded = new Map<string, Loaded>();
const tableOnly = process.argv.includes("--table-only");
for (let seed = 0; seed < (tableOnly ? 0 : seeds); seed++) {
  for (const task of tasks) {
    const spec = TASKS[task];
    if (spec === undefined) throw new Error(`unknown task ${task} (have ${Object.keys(TASKS).join(", ")})`);
    if (!loaded.has(task)) {
      const trainDs = await loadPreset(task, { split: "train", dataDir });
      const testDs = await loadPreset(task, { split: "test", dataDir });
      loaded.set(task, { trainDs, testDs, train: await features(task, "train", trainDs), test: await features(task, "test", testDs) });
    }
    const { train, test, trainDs, testDs } = loaded.get(task)!;
    const C = trainDs.labelNames.length;
    const yTrain = Int32Array.from(train.labels), yTest = Int32Array.from(test.labels);
    const trainTexts = trainDs.examples.map((e) => e.text), testTexts = testDs.examples.map((e) => e.text);
    const split = stratifiedSplit(yTrain, 0.1, seed);
    const record = (method: string, test: MetricReport, params: number, s0: number, note?: string) => {
      state.runs.push({ task, method, metric: spec.metric, seed, test, params, note, seconds: (performance.now() - s0) / 1000 });
      state.wallSeconds = wall0 + (performance.now() - t0) / 1000;
      save();
      console.log(`${task} seed ${seed} ${method}: ${spec.metric === "f1" ? `F1 ${test.f1!.toFixed(3)} AUPRC ${test.auprc!.toFixed(3)}` : `accuracy ${test.accuracy.toFixed(3)}`} (${((performance.now() - s0) / 1000).toFixed(0)} s)`);
    };
    const opts = { classes: C, task: trainDs.task, seed };
    for (const method of methods) {
      if (done(task, method, seed)) continue;
      const s0 = performance.now();
      if (method === "pooling" || method === "scoring" || method === "mha") {
        const cfg = { kind: method } as const;
        let bar: ProgressBar | undefined;
        const r: TrainResult = await trainProbe(cfg, cacheSource(train, cfg), { ...opts, onProgress: (p) => { bar ??= new ProgressBar({ total: p.totalSteps, label: `${task} ${method} seed ${seed}`, unit: "step" }); bar.update(p.step); } });
        bar?.finish();
        record(method, score(task, yTest, await predictSource(r.probe, cacheSource(test, cfg), 64), C, r.threshold), r.probe.parameterCount({ includeHead: true }), s0);
      } else if (method === "fixed-last" || method === "fixed-mean") {
        const token = method === "fixed-last" ? "last" : "mean";
        const bar = new ProgressBar({ total: train.manifest.model.layers, label: `${task} ${method} seed ${seed}`, unit: "layer" });
        const b = await bestFixedLayer(cacheSource(train, { kind: "fixed", token }), token, opts, (l) => bar.update(l));
        bar.finish();
        const cfg = { kind: "fixed", layer: b.layer, token } as const;
        record(method, score(task, yTest, await predictSource(b.best.probe, cacheSource(test, cfg), 64), C, b.best.threshold), b.best.probe.parameterCount({ includeHead: true }), s0, `layer ${b.layer}`);
      } else if (method === "muli") {
        const V = engine.spec.vocabSize;
        const lt = await cachedRows(`${task}-train.logits.f32`, trainTexts.length, V, (p) => lastLogits(trainTexts, p), `${task} logits/train`);
        const le = await cachedRows(`${task}-test.logits.f32`, testTexts.length, V, (p) => lastLogits(testTexts, p), `${task} logits/test`);
        const rows = (idx: number[]) => { const o = new Float32Array(idx.length * V); idx.forEach((i, r) => o.set(lt.subarray(i * V, (i + 1) * V), r * V)); return o; };
        const m = fitMuli(rows(split.train), split.train.map((i) => yTrain[i]), rows(split.val), split.val.map((i) => yTrain[i]), V, C);
        const valProbs = predictMuli(m, rows(split.val));
        const thr = C === 2 ? chooseThreshold(split.val.map((i) => yTrain[i]), positiveScores(valProbs)) : undefined;
        const nonZero = m.model.W.reduce((a, v) => a + (v !== 0 ? 1 : 0), 0);
        record(method, score(task, yTest, predictMuli(m, le), C, thr), nonZero + C, s0, `${nonZero} non-zero of ${V * C}`);
      } else if (method === "prompting") {
        // No training: the same scores for every seed; the threshold (F1 tasks) still comes from validation.
        const po = { labelWords: spec.labelWords, template: spec.template, maxTextTokens: maxTokens };
        const st = await cachedRows(`${task}-test.prompt.f32`, testTexts.length, C, (p) => promptScores(engine, testTexts, po, p), `${task} prompting/test`);
        let thr: number | undefined;
        if (C === 2) {
          const sv = await cachedRows(`${task}-val${seed}.prompt.f32`, split.val.length, C, (p) => promptScores(engine, split.val.map((i) => trainTexts[i]), po, p), `${task} prompting/val`);
          thr = chooseThreshold(split.val.map((i) => yTrain[i]), positiveScores(softmaxRows(sv, C)));
        }
        record(method, score(task, yTest, softmaxRows(st, C), C, thr), 0, s0);
      } else if (method === "tfidf") {
        const m = fitTfidf(split.train.map((i) => trainTexts[i]), split.train.map((i) => yTrain[i]), split.val.map((i) => trainTexts[i]), split.val.map((i) => yTrain[i]), C);
        const valProbs = predictTfidf(m, split.val.map((i) => trainTexts[i]));
        const thr = C === 2 ? chooseThreshold(split.val.map((i) => yTrain[i]), positiveScores(valProbs)) : undefined;
        record(method, score(task, yTest, predictTfidf(m, testTexts), C, thr), m.model.W.length + C, s0, `${m.vectorizer.vocabulary.size} n-grams`);
      } else throw new Error(`unknown method ${method}`);
    }
  }
}
for (const { train, test } of loaded.values()) { train.close(); test.close(); }
await engine.dispose();

// Markdown in the paper's layout: one row per method, one column per task metric, mean ± std over seeds.
const cols: [string, string, (m: MetricReport) => number][] = [];
for (const t of tasks) {
  if (TASKS[t].metric === "f1") cols.push([t, "F1", (m) => m.f1!], [t, "AUPRC", (m) => m.auprc!]);
  else cols.push([t, "acc", (m) => m.accuracy]);
}
const lines = [`| method | ${cols.map(([t, k]) => `${t} ${k}`).join(" | ")} | params (${tasks[0]}) |`, `|---|${cols.map(() => "---|").join("")}---|`];
for (const method of methods) {
  const cells = cols.map(([t, , f]) => {
    const xs = state.runs.filter((r) => r.task === t && r.method === method).map((r) => f(r.test));
    if (xs.length === 0) return "—";
    const { mean, std } = meanStd(xs);
    return `${mean.toFixed(3)} ± ${std.toFixed(3)}${xs.length < seeds ? ` (${xs.length} seeds)` : ""}`;
  });
  const p = state.runs.find((r) => r.task === tasks[0] && r.method === method);
  lines.push(`| ${method} | ${cells.join(" | ")} | ${p?.params.toLocaleString("en-US") ?? "—"} |`);
}
writeFileAtomic(join(out, "quality.md"), `Quality on ${model === "" ? "stories260K (built-in)" : model} (test splits, mean ± std over the seeds run — see the column notes; hidden states cut at ${maxTokens} tokens). Wall ${state.wallSeconds.toFixed(0)} s on ${state.machine}.\n\n${lines.join("\n")}\n`);
console.log(lines.join("\n"));
