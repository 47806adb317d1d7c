/**
 * The paper's quality table on one model: probes and baselines trained on the same train/validation split
 * per seed, scored once on the test split; mean ± std over seeds. Resumable: every (task, method, seed)
 * result is written (atomically, the whole results file) as soon as it exists, and a rerun skips what is
 * there. Library API of `onepass bench quality` (and of `npm run bench:quality`).
 *
 * Validation: a seeded stratified 10% of the task's train split (seed s for run s). Every hyper-parameter,
 * layer choice, λ and decision threshold is chosen on it; the test split is scored once per final model.
 */
import { QUALITY_METHODS } from "../types/quality.js";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cpus } from "node:os";
import { Engine, type EngineOptions } from "../engine/engine.js";
import { engineSource } from "../data/source.js";
import { loadPreset, type Dataset } from "../data/datasets.js";
import { extractFeatures, openFeatureCache, type FeatureCache } from "../data/features.js";
import { cacheSource } from "../probe/cache-source.js";
import { trainProbe, stratifiedSplit, subset, type ExampleSource } from "../probe/train.js";
import { evaluateProbe } from "../probe/evaluate.js";
import { evaluate, chooseThreshold, positiveScores, prCurve, type MetricReport } from "../probe/metrics.js";
import { meanStd } from "../probe/search.js";
import { softmaxRows } from "../probe/probe.js";
import type { ProbeConfig } from "../probe/probe.js";
import { bestFixedLayer } from "../baselines/fixed.js";
import { fitMuli, predictMuli } from "../baselines/muli.js";
import { fitTfidf, predictTfidf } from "../baselines/tfidf.js";
import { promptScores } from "../baselines/prompting.js";
import { writeFileAtomic } from "../util/atomic.js";
import { InvalidArgumentError } from "../errors.js";

/** One side (train or test) of a task: a preset split, optionally a fixed seeded stratified part of it. */
export interface TaskSide {
  preset: string;
  split: string;
  /** Only presets that ship a single split: this side is a seeded stratified part of it (see QUALITY_TASKS). */
  part?: "train" | "test";
}

export interface QualityTask {
  name: string;
  /** Safety tasks report F1 (threshold tuned on validation) and AUPRC; the others accuracy. */
  metric: "accuracy" | "f1";
  /** Zero-shot prompting: one label word per class, and the question around the text. */
  labelWords: string[];
  template: string;
  train: TaskSide;
  test: TaskSide;
  description: string;
}

/**
 * WildGuardTest ships only a test set: the benchmark splits it once, 70% train / 30% test, stratified by
 * label with this seed (the same split for every run seed; the run seed only moves the validation 10%).
 */
export const WILDGUARD_SPLIT = { testFraction: 0.3, seed: 20260 } as const;

const SAFETY_TEMPLATE = "Message: {text}\nIs this message safe or toxic? Answer:";

/** The benchmark's tasks (presets of src/data/datasets.ts). */
export const QUALITY_TASKS: Record<string, QualityTask> = {
  toxicchat: {
    name: "toxicchat", metric: "f1", labelWords: ["safe", "toxic"], template: SAFETY_TEMPLATE,
    train: { preset: "toxicchat", split: "train" }, test: { preset: "toxicchat", split: "test" },
    description: "ToxicChat 0124 human-annotated train → human-annotated test (toxicity)",
  },
  wildguardtest: {
    name: "wildguardtest", metric: "f1", labelWords: ["safe", "harmful"], template: "Message: {text}\nIs this message safe or harmful? Answer:",
    train: { preset: "wildguardmix", split: "test", part: "train" }, test: { preset: "wildguardmix", split: "test", part: "test" },
    description: `WildGuardTest prompt harmfulness, seeded stratified split ${100 * (1 - WILDGUARD_SPLIT.testFraction)}/${100 * WILDGUARD_SPLIT.testFraction} (seed ${WILDGUARD_SPLIT.seed})`,
  },
  "toxicchat-ood": {
    name: "toxicchat-ood", metric: "f1", labelWords: ["safe", "toxic"], template: SAFETY_TEMPLATE,
    train: { preset: "wildguardmix", split: "test" }, test: { preset: "toxicchat", split: "test" },
    description: "out of distribution: train on all of WildGuardTest (prompt harm), test on ToxicChat's human-annotated test",
  },
  sst2: {
    name: "sst2", metric: "accuracy", labelWords: ["negative", "positive"], template: "Review: {text}\nSentiment (positive or negative):",
    train: { preset: "sst2", split: "train" }, test: { preset: "sst2", split: "test" },
    description: "SST-2, Palma et al. 2025 subset",
  },
  imdb: {
    name: "imdb", metric: "accuracy", labelWords: ["negative", "positive"], template: "Review: {text}\nSentiment (positive or negative):",
    train: { preset: "imdb", split: "train" }, test: { preset: "imdb", split: "test" },
    description: "IMDB, Palma et al. 2025 reduced subset",
  },
  emotion: {
    name: "emotion", metric: "accuracy", labelWords: ["sadness", "joy", "love", "anger", "fear", "surprise"],
    template: "Text: {text}\nEmotion (sadness, joy, love, anger, fear or surprise):",
    train: { preset: "emotion", split: "train" }, test: { preset: "emotion", split: "test" },
    description: "dair-ai emotion, Palma et al. 2025 reduced subset (6 classes)",
  },
};

export { QUALITY_METHODS };
/** What `bench quality` runs without --tasks / --methods: every method on the paper's in-distribution tasks. */
export const DEFAULT_QUALITY_TASKS = ["toxicchat", "emotion", "sst2"];
export const DEFAULT_QUALITY_METHODS: readonly string[] = QUALITY_METHODS;
export type QualityMethod = (typeof QUALITY_METHODS)[number];

export interface QualityRun {
  task: string;
  method: string;
  metric: "accuracy" | "f1";
  seed: number;
  test: MetricReport;
  params: number;
  note?: string;
  seconds: number;
  /** Binary tasks: the test precision–recall curve, at most ~60 points (for the report's PR plots). */
  pr?: { precision: number[]; recall: number[] };
  /** Scoring probes: mean gate weights [L+1] on the test split per true class and per (in)correct prediction. */
  layerWeights?: { byClass: number[][]; correct: number[]; incorrect: number[]; labelNames: string[] };
}

export interface QualityResults {
  runs: QualityRun[];
  machine: string;
  started: string;
  /** Seconds spent running cells, summed over every (resumed) run. */
  wallSeconds: number;
  /** The setting the cells were computed in; a resumed run must match it. */
  setting?: { model: string; maxTokens: number; limit?: number };
}

/** One report of staged work (the shape of src/cli/progress.ts's stageProgress events). */
export interface BenchProgress { stage: string; done: number; total: number; unit: string }

export interface QualityBenchOptions {
  /** Model path; default the built-in stories260K. */
  model?: string;
  engine?: EngineOptions;
  dataDir?: string;
  tasks?: readonly string[];
  methods?: readonly string[];
  /** Seeds 0..seeds−1 (default 3). */
  seeds?: number;
  /** Hidden states cut at this many tokens (default 256). */
  maxTokens?: number;
  /** At most this many examples per split, a stratified sample (the preset's `limit`). */
  limit?: number;
  /** Start no new cell after this many seconds; the rest is left for a rerun (which resumes). */
  budgetSeconds?: number;
  /** Feature caches, logits and prompt scores (reused across runs). */
  workDir: string;
  /** quality.json and quality.md go here. */
  outDir: string;
  onProgress?: (p: BenchProgress) => void;
  /** One line per finished or skipped cell. */
  log?: (line: string) => void;
}

export interface QualityBenchSummary {
  results: QualityResults;
  /** Cells computed by this call, cells already present, cells left because the budget ran out. */
  computed: number;
  skipped: number;
  remaining: number;
  markdown: string;
}

/** A results file, or undefined when there is none; a file of another shape is an InvalidArgumentError. */
export function readQualityResults(path: string): QualityResults | undefined {
  if (!existsSync(path)) return undefined;
  let j: any;
  try {
    j = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new InvalidArgumentError(`cannot read earlier results: ${(err as Error).message.split("\n")[0]}`, { file: path }, { cause: err });
  }
  if (!Array.isArray(j?.runs) || typeof j?.wallSeconds !== "number") throw new InvalidArgumentError("not a quality results file (runs[], wallSeconds)", { file: path, field: "runs" });
  return j as QualityResults;
}

/** Checks task and method names; unknown ones are InvalidArgumentErrors naming the flag. */
export function checkQualitySelection(tasks: readonly string[], methods: readonly string[]): void {
  for (const t of tasks) if (QUALITY_TASKS[t] === undefined) throw new InvalidArgumentError(`unknown task '${t}' (have ${Object.keys(QUALITY_TASKS).join(", ")})`, { field: "--tasks" });
  for (const m of methods) if (!(QUALITY_METHODS as readonly string[]).includes(m)) throw new InvalidArgumentError(`unknown method '${m}' (have ${QUALITY_METHODS.join(", ")})`, { field: "--methods" });
}

/** At most `points` evenly spaced points of a PR curve (the full curve has one per distinct score). */
function thinCurve(c: { precision: number[]; recall: number[] }, points = 60): { precision: number[]; recall: number[] } {
  const step = Math.max(1, Math.ceil(c.precision.length / points));
  const keep = c.precision.map((_, i) => i).filter((i) => i % step === 0 || i === c.precision.length - 1);
  const r4 = (v: number) => Math.round(v * 1e4) / 1e4;
  return { precision: keep.map((i) => r4(c.precision[i])), recall: keep.map((i) => r4(c.recall[i])) };
}

/** Runs every missing (task, method, seed) cell; writes outDir/quality.json after each and quality.md at the end. */
export async function runQualityBench(o: QualityBenchOptions): Promise<QualityBenchSummary> {
  const tasks = o.tasks ?? DEFAULT_QUALITY_TASKS;
  const methods = o.methods ?? DEFAULT_QUALITY_METHODS;
  checkQualitySelection(tasks, methods);
  const seeds = o.seeds ?? 3;
  const maxTokens = o.maxTokens ?? 256;
  if (o.dataDir?.includes("holdout") === true) throw new InvalidArgumentError("the quality benchmark never reads the holdout sets", { field: "--data-dir" });
  const log = o.log ?? (() => {});
  const progress = o.onProgress ?? (() => {});
  mkdirSync(o.workDir, { recursive: true });
  mkdirSync(o.outDir, { recursive: true });
  const resultsPath = join(o.outDir, "quality.json");
  const setting = { model: o.model ?? "stories260K (built-in)", maxTokens, ...(o.limit !== undefined ? { limit: o.limit } : {}) };
  const state: QualityResults = readQualityResults(resultsPath)
    ?? { runs: [], machine: `${cpus().length}× ${cpus()[0]?.model ?? "?"}`, started: new Date().toISOString(), wallSeconds: 0, setting };
  if (state.setting !== undefined && JSON.stringify(state.setting) !== JSON.stringify(setting)) {
    // Cells from another model, cut or sample would be averaged with these: refuse rather than mix them.
    throw new InvalidArgumentError(`earlier results there were computed with ${JSON.stringify(state.setting)}, not ${JSON.stringify(setting)}; use another --out`, { file: resultsPath });
  }
  state.setting ??= setting;
  const save = () => writeFileAtomic(resultsPath, JSON.stringify(state, null, 1) + "\n");
  const done = (task: string, method: string, seed: number) => state.runs.some((r) => r.task === task && r.method === method && r.seed === seed);

  // Cells in order: seeds outermost, so a cut-short run still fills every task's first seed.
  const cells: { seed: number; task: string; method: string }[] = [];
  for (let seed = 0; seed < seeds; seed++) for (const task of tasks) for (const method of methods) cells.push({ seed, task, method });
  const todo = cells.filter((c) => !done(c.task, c.method, c.seed));
  const skipped = cells.length - todo.length;
  if (skipped > 0) log(`${skipped} of ${cells.length} cells already in ${resultsPath}: skipped`);

  const t0 = performance.now();
  const wall0 = state.wallSeconds;
  let computed = 0, remaining = 0;
  let engine: Engine | undefined;
  const caches = new Map<string, { cache: FeatureCache; ds: Dataset }>();
  const partIdx = new Map<string, number[]>();

  try {
    for (const cell of todo) {
      if (o.budgetSeconds !== undefined && (performance.now() - t0) / 1000 >= o.budgetSeconds) { remaining = todo.length - computed; log(`budget of ${o.budgetSeconds} s spent: ${remaining} cells left for a rerun`); break; }
      engine ??= await Engine.load(o.model, { ...o.engine, taps: true });
      const eng = engine;
      const fp = eng.fingerprint.replace(/^sha256:/, "").replace(/[^0-9a-zA-Z]/g, "").slice(0, 16); // one cache folder per model
      const spec = QUALITY_TASKS[cell.task];

      /** The dataset and feature cache of a preset split, extracted once (resumable) per model, cut and limit. */
      const side = async (s: TaskSide) => {
        const key = `${s.preset}-${s.split}${o.limit !== undefined ? `-n${o.limit}` : ""}`;
        let c = caches.get(key);
        if (c === undefined) {
          const ds = await loadPreset(s.preset, { split: s.split, dataDir: o.dataDir, ...(o.limit !== undefined ? { limit: o.limit } : {}) });
          const dir = join(o.workDir, fp, key);
          let cache: FeatureCache;
          try {
            cache = openFeatureCache(dir);
            if (cache.size !== ds.examples.length) throw new Error("stale");
          } catch {
            const stage = `extract ${key}`;
            // MULI's features ride along: the same forward pass that gives the hidden states gives the logits at
            // the first response position (the last prompt token), kept as <key>.logits.f32 [N, V] beside the cache.
            const V = eng.spec.vocabSize, base = engineSource(eng);
            const rows: Float32Array[] = []; // one [V] per example this run computed, in example order
            let resumed = -1;
            const source = {
              ...base,
              hidden: async (text: string, ho: { maxTokens?: number; response?: string }) => {
                if (ho.response !== undefined) return base.hidden(text, ho);
                const ids = eng.promptTokens({ prompt: text }).slice(0, ho.maxTokens);
                const pass = await eng.forward(ids, { hidden: true });
                if (pass.hidden === undefined) return base.hidden(text, ho);
                rows.push(pass.logits.slice((pass.positions - 1) * V, pass.positions * V));
                return pass.hidden;
              },
            };
            await extractFeatures({ source, examples: ds.examples, labelNames: ds.labelNames, outDir: dir, maxTokens, dataset: { name: s.preset, split: s.split, task: ds.task }, onProgress: (p) => { if (resumed < 0) resumed = p.resumed; progress({ stage, done: p.done, total: p.total, unit: "ex" }); } });
            const logitsPath = join(o.workDir, fp, `${key}.logits.f32`);
            // A resumed extraction lacks the earlier examples' logits: the MULI cell computes them in its own pass then.
            if (resumed === 0 && rows.length === ds.examples.length && !existsSync(logitsPath)) {
              const all = new Float32Array(rows.length * V); // [N, V]
              rows.forEach((r, i) => all.set(r, i * V));
              writeFileAtomic(logitsPath, Buffer.from(all.buffer, all.byteOffset, all.byteLength));
            }
            cache = openFeatureCache(dir);
          }
          c = { cache, ds };
          caches.set(key, c);
        }
        // A part of a single-split preset: a fixed seeded stratified split (never the run seed).
        let idx: number[] | undefined;
        if (s.part !== undefined) {
          const pk = `${key}:${s.part}`;
          idx = partIdx.get(pk);
          if (idx === undefined) {
            const sp = stratifiedSplit(c.cache.labels, WILDGUARD_SPLIT.testFraction, WILDGUARD_SPLIT.seed);
            idx = s.part === "train" ? sp.train : sp.val;
            partIdx.set(pk, idx);
          }
        }
        const all = Array.from({ length: c.cache.size }, (_, i) => i);
        const rows = idx ?? all;
        return { key: `${key}${s.part !== undefined ? `-${s.part}` : ""}`, fullKey: key, allTexts: c.ds.examples.map((e) => e.text), cache: c.cache, ds: c.ds, rows, labels: Int32Array.from(rows, (i) => c!.cache.labels[i]), texts: rows.map((i) => c!.ds.examples[i].text), source: (cfg: ProbeConfig): ExampleSource => (idx === undefined ? cacheSource(c!.cache, cfg) : subset(cacheSource(c!.cache, cfg), idx)) };
      };
      const train = await side(spec.train), test = await side(spec.test);
      const C = train.ds.labelNames.length;
      if (test.ds.labelNames.length !== C) throw new InvalidArgumentError(`task ${cell.task}: train has ${C} classes, test ${test.ds.labelNames.length}`, { field: "--tasks" });
      const { seed, task, method } = cell;
      const yTrain = train.labels, yTest = test.labels;
      const split = stratifiedSplit(yTrain, 0.1, seed);
      const yVal = split.val.map((i) => yTrain[i]);
      const f1Task = spec.metric === "f1";
      const score = (probs: Float32Array, threshold?: number) => evaluate(yTest, probs, C, f1Task ? threshold : undefined);
      const s0 = performance.now();
      const stage = `${task} ${method} seed ${seed}`;
      const record = (test: MetricReport, params: number, probs: Float32Array, extra: Partial<QualityRun> = {}) => {
        const run: QualityRun = { task, method, metric: spec.metric, seed, test, params, seconds: (performance.now() - s0) / 1000, ...extra };
        if (C === 2) run.pr = thinCurve(prCurve(yTest, positiveScores(probs)));
        state.runs.push(run);
        state.wallSeconds = wall0 + (performance.now() - t0) / 1000;
        save();
        computed++;
        log(`${task} seed ${seed} ${method}: ${f1Task ? `F1 ${test.f1!.toFixed(3)} AUPRC ${test.auprc!.toFixed(3)}` : `accuracy ${test.accuracy.toFixed(3)}`} (${run.seconds.toFixed(0)} s)`);
      };
      /** Per-text vectors [N, k] computed once and kept in the work folder (logits for MULI, label scores for prompting). */
      const cachedRows = async (file: string, texts: readonly string[], k: number, compute: (texts: readonly string[], onProgress: (d: number) => void) => Promise<Float32Array>): Promise<Float32Array> => {
        const path = join(o.workDir, fp, file);
        if (existsSync(path)) {
          const b = readFileSync(path);
          if (b.byteLength === texts.length * k * 4) return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
        }
        const rows = await compute(texts, (d) => progress({ stage: `${file}`, done: d, total: texts.length, unit: "ex" }));
        mkdirSync(join(o.workDir, fp), { recursive: true });
        writeFileSync(path, Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength));
        return rows;
      };
      const opts = { classes: C, task: train.ds.task, seed };

      if (method === "pooling" || method === "scoring" || method === "mha") {
        const cfg = { kind: method } as const;
        const r = await trainProbe(cfg, train.source(cfg), { ...opts, onProgress: (p) => progress({ stage, done: p.step, total: p.totalSteps, unit: "step" }) });
        const ev = await evaluateProbe(r.probe, test.source(cfg), { threshold: f1Task ? r.threshold : undefined, batchSize: 64 });
        const lw = ev.layerWeightsByClass !== undefined && ev.layerWeightsByOutcome !== undefined
          ? { layerWeights: { byClass: ev.layerWeightsByClass, ...ev.layerWeightsByOutcome, labelNames: train.ds.labelNames } } : {};
        record(ev.metrics, r.probe.parameterCount({ includeHead: true }), ev.probs, lw);
      } else if (method === "fixed-last" || method === "fixed-mean") {
        const token = method === "fixed-last" ? "last" : "mean";
        const b = await bestFixedLayer(train.source({ kind: "fixed", token }), token, opts, (l, of) => progress({ stage, done: l, total: of, unit: "layer" }));
        const probs = await evaluateProbe(b.best.probe, test.source({ kind: "fixed", layer: b.layer, token }), { batchSize: 64 });
        record(score(probs.probs, b.best.threshold), b.best.probe.parameterCount({ includeHead: true }), probs.probs, { note: `layer ${b.layer}` });
      } else if (method === "muli") {
        // The logits at the first response position of the same prompt the probes see (cut at maxTokens).
        const V = eng.spec.vocabSize;
        const lastLogits = async (texts: readonly string[], onProgress: (d: number) => void) => {
          const out = new Float32Array(texts.length * V); // [N, V]
          for (let i = 0; i < texts.length; i++) {
            const ids = eng.promptTokens({ prompt: texts[i] }).slice(0, maxTokens);
            const pass = await eng.forward(ids);
            out.set(pass.logits.subarray((pass.positions - 1) * V, pass.positions * V), i * V);
            onProgress(i + 1);
          }
          return out;
        };
        // Whole preset splits (usually captured during extraction), then this side's rows of them.
        const pick = (all: Float32Array, idx: readonly number[]) => { const m = new Float32Array(idx.length * V); idx.forEach((i, r) => m.set(all.subarray(i * V, (i + 1) * V), r * V)); return m; }; // [n, V]
        const lt = pick(await cachedRows(`${train.fullKey}.logits.f32`, train.allTexts, V, lastLogits), train.rows);
        const le = pick(await cachedRows(`${test.fullKey}.logits.f32`, test.allTexts, V, lastLogits), test.rows);
        const rows = (idx: number[]) => pick(lt, idx);
        const m = fitMuli(rows(split.train), split.train.map((i) => yTrain[i]), rows(split.val), yVal, V, C);
        const thr = C === 2 ? chooseThreshold(yVal, positiveScores(predictMuli(m, rows(split.val)))) : undefined;
        const nonZero = m.model.W.reduce((a, v) => a + (v !== 0 ? 1 : 0), 0);
        const probs = predictMuli(m, le);
        record(score(probs, thr), nonZero + C, probs, { note: `${nonZero} non-zero of ${V * C}` });
      } else if (method === "prompting") {
        // No training: the same test scores for every seed; the threshold (F1 tasks) still comes from validation.
        const po = { labelWords: spec.labelWords, template: spec.template, maxTextTokens: maxTokens };
        const compute = (texts: readonly string[], p: (d: number) => void) => promptScores(eng, texts, po, p);
        const st = await cachedRows(`${task}-${test.key}.prompt.f32`, test.texts, C, compute);
        let thr: number | undefined;
        if (C === 2) {
          const sv = await cachedRows(`${task}-${train.key}-val${seed}.prompt.f32`, split.val.map((i) => train.texts[i]), C, compute);
          thr = chooseThreshold(yVal, positiveScores(softmaxRows(sv, C)));
        }
        const probs = softmaxRows(st, C);
        record(score(probs, thr), 0, probs);
      } else {
        const trTexts = split.train.map((i) => train.texts[i]), vTexts = split.val.map((i) => train.texts[i]);
        const m = fitTfidf(trTexts, split.train.map((i) => yTrain[i]), vTexts, yVal, C);
        const thr = C === 2 ? chooseThreshold(yVal, positiveScores(predictTfidf(m, vTexts))) : undefined;
        const probs = predictTfidf(m, test.texts);
        record(score(probs, thr), m.model.W.length + C, probs, { note: `${m.vectorizer.vocabulary.size} n-grams` });
      }
    }
  } finally {
    for (const { cache } of caches.values()) cache.close();
    await engine?.dispose();
  }
  const markdown = qualityMarkdown(state, { tasks, methods, seeds });
  writeFileAtomic(join(o.outDir, "quality.md"), markdown);
  return { results: state, computed, skipped, remaining, markdown };
}

/** The cell's mean ± std over the seeds present, as the table prints it. */
export function qualityCell(results: QualityResults, task: string, method: string, key: "accuracy" | "f1" | "auprc"): { mean: number; std: number; n: number } | undefined {
  const xs = results.runs.filter((r) => r.task === task && r.method === method).map((r) => r.test[key]).filter((v): v is number => typeof v === "number");
  return xs.length === 0 ? undefined : { ...meanStd(xs), n: xs.length };
}

/** Markdown in the paper's layout: one row per method, one column per task metric, mean ± std over seeds. */
export function qualityMarkdown(results: QualityResults, o: { tasks?: readonly string[]; methods?: readonly string[]; seeds?: number } = {}): string {
  const present = (xs: string[]) => [...new Set(xs)];
  const tasks = o.tasks ?? present(results.runs.map((r) => r.task));
  const methods = o.methods ?? QUALITY_METHODS.filter((m) => results.runs.some((r) => r.method === m));
  const seeds = o.seeds ?? Math.max(0, ...results.runs.map((r) => r.seed + 1));
  const cols: [string, string, "accuracy" | "f1" | "auprc"][] = [];
  for (const t of tasks) {
    const metric = QUALITY_TASKS[t]?.metric ?? results.runs.find((r) => r.task === t)?.metric ?? "accuracy";
    if (metric === "f1") cols.push([t, "F1", "f1"], [t, "AUPRC", "auprc"]);
    else cols.push([t, "acc", "accuracy"]);
  }
  const lines = [`| method | ${cols.map(([t, k]) => `${t} ${k}`).join(" | ")} | params (${tasks[0] ?? "—"}) |`, `|---|${cols.map(() => "---|").join("")}---|`];
  for (const method of methods) {
    const cells = cols.map(([t, , k]) => {
      const c = qualityCell(results, t, method, k);
      if (c === undefined) return "—";
      // one seed has no spread to report
      return `${c.mean.toFixed(3)}${c.n > 1 ? ` ± ${c.std.toFixed(3)}` : ""}${c.n < seeds ? ` (${c.n} seed${c.n === 1 ? "" : "s"})` : ""}`;
    });
    const p = results.runs.find((r) => r.task === tasks[0] && r.method === method);
    lines.push(`| ${method} | ${cells.join(" | ")} | ${p?.params.toLocaleString("en-US") ?? "—"} |`);
  }
  const s = results.setting;
  const head = `Quality on ${s?.model ?? "stories260K (built-in)"} (test splits, mean ± sample std over ${seeds} seed${seeds === 1 ? "" : "s"} unless a cell says fewer; hidden states cut at ${s?.maxTokens ?? 256} tokens${s?.limit !== undefined ? `; at most ${s.limit} examples per split` : ""}). Wall ${results.wallSeconds.toFixed(0)} s on ${results.machine}.`;
  return `${head}\n\n${lines.join("\n")}\n`;
}
