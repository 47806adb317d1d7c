// `onepass bench quality` end to end on a tiny synthetic data dir (SST-2 and ToxicChat files in the presets'
// layouts) with the built-in model: the JSON holds one cell per (task, method, seed), the Markdown table's
// numbers are the JSON's mean ± sample std, a rerun after a lost cell recomputes only that cell (to the same
// numbers: the seeds fix everything), --budget leaves cells for a rerun, and another setting is refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Engine } from "../src/engine/engine.js";
import { join } from "node:path";
import { maxAbsDiff, mulberry32, tempDir } from "./helpers.js";

const CLI = "dist/src/cli/main.js";
const POS = ["wonderful", "delightful", "superb"], NEG = ["dreadful", "tedious", "awful"];
const FILLER = ["the", "film", "was", "a", "story", "with", "some", "scenes", "and", "music", "in", "it"];

/** Texts whose class is planted as one of three class words among seeded filler words. */
function texts(n: number, seed: number, classWords = 2): { text: string; label: number }[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, (_, i) => {
    const label = i % 2;
    const words = Array.from({ length: 6 + Math.floor(r() * 6) }, () => FILLER[Math.floor(r() * FILLER.length)]);
    for (let k = 0; k < classWords; k++) words.splice(Math.floor(r() * words.length), 0, (label === 1 ? POS : NEG)[Math.floor(r() * 3)]);
    return { text: words.join(" "), label };
  });
}

function writeData(dir: string): void {
  mkdirSync(join(dir, "palma2025"), { recursive: true });
  mkdirSync(join(dir, "toxicchat"), { recursive: true });
  const csv = (rows: { text: string; label: number }[]) => `text,label\n${rows.map((x) => `${x.text},${x.label}`).join("\n")}\n`;
  writeFileSync(join(dir, "palma2025", "sst2_train.csv"), csv(texts(60, 1)));
  writeFileSync(join(dir, "palma2025", "sst2_test.csv"), csv(texts(30, 2)));
  // ToxicChat (JUDGE-BENCH layout), one positive in four as in an imbalanced safety set
  const tc = (rows: { text: string; label: number }[]) => JSON.stringify({ instances: rows.map((x, i) => ({ id: `c${i}`, instance: x.text, annotations: { toxicity: { majority_human: String(i % 4 === 1 ? 1 : 0) } } })) });
  const planted = (rows: { text: string; label: number }[]) => rows.map((x, i) => ({ ...x, text: `${x.text} ${i % 4 === 1 ? "dreadful" : "superb"}` }));
  writeFileSync(join(dir, "toxicchat", "judgebench_toxic_chat_train.json"), tc(planted(texts(64, 3, 0))));
  writeFileSync(join(dir, "toxicchat", "judgebench_toxic_chat_test.json"), tc(planted(texts(32, 4, 0))));
}

const run = (args: string[]) => spawnSync(process.execPath, [CLI, "bench", "quality", ...args], { encoding: "utf8" });

function meanStd(xs: number[]): [number, number] {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return [m, Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1))];
}

test("bench quality: cells in JSON, table = JSON mean ± std, MULI logits from the extraction pass, resume recomputes only lost cells, budget, setting check", { timeout: 120_000 }, async () => {
  const dir = tempDir("bench-quality");
  try {
    const data = join(dir, "data"), out = join(dir, "out"), work = join(dir, "work");
    writeData(data);
    const args = ["--data-dir", data, "--tasks", "sst2,toxicchat", "--methods", "pooling,scoring,tfidf", "--seeds", "2", "--work", work, "--out", out, "--quiet"];
    const r = run(args);
    assert.equal(r.status, 0, r.stderr);
    const q = JSON.parse(readFileSync(join(out, "quality.json"), "utf8"));
    assert.equal(q.runs.length, 2 * 3 * 2);
    const cell = (task: string, method: string, seed: number) => q.runs.find((x: any) => x.task === task && x.method === method && x.seed === seed);
    // TF-IDF sees the planted words: every test text right
    for (const s of [0, 1]) assert.equal(cell("sst2", "tfidf", s).test.accuracy, 1);
    // the probe ranks every planted positive first (thresholds come from a 6-example validation set, so F1 is not checked)
    for (const s of [0, 1]) assert.equal(cell("toxicchat", "pooling", s).test.auprc, 1);
    // the table's cells are the JSON's mean ± sample std
    const md = readFileSync(join(out, "quality.md"), "utf8");
    assert.match(md, /\| method \| sst2 acc \| toxicchat F1 \| toxicchat AUPRC \| params \(sst2\) \|/);
    for (const method of ["pooling", "scoring", "tfidf"]) {
      const row = md.split("\n").find((l) => l.startsWith(`| ${method} |`))!;
      const cells = row.split("|").slice(2, 5).map((c) => c.trim());
      const expect = [["sst2", "accuracy"], ["toxicchat", "f1"], ["toxicchat", "auprc"]].map(([t, k]) => {
        const [m, s] = meanStd([0, 1].map((seed) => cell(t, method, seed).test[k]));
        return `${m.toFixed(3)} ± ${s.toFixed(3)}`;
      });
      assert.deepEqual(cells, expect, method);
    }
    // safety cells carry a PR curve; scoring cells the gate's mean layer weights (a softmax over L+1 = 6 layers)
    const pr = cell("toxicchat", "pooling", 0).pr;
    assert.ok(pr.precision.length >= 2 && pr.precision.length === pr.recall.length && pr.recall.at(-1) === 1);
    const lw = cell("toxicchat", "scoring", 1).layerWeights;
    assert.equal(lw.byClass.length, 2);
    for (const w of [...lw.byClass, lw.correct]) { assert.equal(w.length, 6); assert.ok(Math.abs(w.reduce((a: number, b: number) => a + b, 0) - 1) < 1e-4); }
    assert.equal(cell("sst2", "tfidf", 0).layerWeights, undefined);

    // MULI's logits come from the extraction pass (whatever the methods): the row of a text equals a separate forward pass's last logits
    const engine = await Engine.load(undefined, { taps: true });
    try {
      const fpDir = readdirSync(work).find((n) => !n.includes("."))!;
      const b = readFileSync(join(work, fpDir, "sst2-train.logits.f32"));
      const logits = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); // [N, V]
      const V = engine.spec.vocabSize;
      assert.equal(logits.length, 60 * V);
      const first = readFileSync(join(data, "palma2025", "sst2_train.csv"), "utf8").split("\n")[1].replace(/,\d$/, "");
      const pass = await engine.forward(engine.promptTokens({ prompt: first }));
      assert.ok(maxAbsDiff(logits.subarray(0, V), pass.logits.subarray((pass.positions - 1) * V)) < 1e-4);
    } finally {
      await engine.dispose();
    }

    // a cell lost (as if the run was killed before writing it): the rerun computes it alone, to the same numbers
    const lost = cell("toxicchat", "pooling", 1);
    writeFileSync(join(out, "quality.json"), JSON.stringify({ ...q, runs: q.runs.filter((x: any) => x !== lost) }));
    const r2 = run(args);
    assert.equal(r2.status, 0, r2.stderr);
    assert.match(r2.stderr, /11 of 12 cells already in .*: skipped/);
    assert.match(r2.stderr, /^1 cells computed, 11 already there/m);
    const q2 = JSON.parse(readFileSync(join(out, "quality.json"), "utf8"));
    assert.equal(q2.runs.length, 12);
    assert.deepEqual(q2.runs.slice(0, 11), q.runs.filter((x: any) => x !== lost)); // untouched
    assert.deepEqual(q2.runs[11].test, lost.test);

    // a tiny budget: the first cell starts (the clock is checked before each), then it stops and says what is left
    const r3 = run([...args.slice(0, -2), join(dir, "out-budget"), "--quiet", "--budget", "0.001"]);
    assert.equal(r3.status, 0, r3.stderr);
    assert.match(r3.stderr, /1 cells computed, 0 already there, 11 left \(budget\)/);
    assert.equal(JSON.parse(readFileSync(join(dir, "out-budget", "quality.json"), "utf8")).runs.length, 1);

    // results from another setting are not mixed in
    const r4 = run([...args, "--max-tokens", "64"]);
    assert.equal(r4.status, 1);
    assert.match(r4.stderr, /^onepass: .*quality\.json.*use another --out/);
    assert.equal(r4.stderr.trim().split("\n").length, 1);
    const r5 = run(["--tasks", "sst2,nope", "--out", out]);
    assert.equal(r5.status, 1);
    assert.match(r5.stderr, /--tasks.*unknown task 'nope'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("bench cost: every variant timed on the prompts, ratios = median / base median, paired ratios = median of per-prompt ratios, Markdown = JSON", { timeout: 120_000 }, () => {
  const dir = tempDir("bench-cost");
  try {
    const data = join(dir, "data"), out = join(dir, "out");
    writeData(data);
    const r = spawnSync(process.execPath, [CLI, "bench", "cost", "--data-dir", data, "--samples", "3", "--out", out, "--quiet"], { encoding: "utf8", env: { ...process.env, ONEPASS_CACHE_DIR: join(dir, "cache") } });
    assert.equal(r.status, 0, r.stderr);
    const c = JSON.parse(readFileSync(join(out, "cost.json"), "utf8"));
    assert.equal(c.samples, 3);
    assert.deepEqual(c.rows.map((x: any) => x.variant), ["base (prefill + 1 token)", "+ pooling probe", "+ scoring probe", "+ MHA probe (H=4, f=8)", "guard-then-serve, equal size (stories260K)", "guard-then-serve, 3× layers (random, stories shape)"]);
    const base = c.rows[0].medianMs;
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    for (const x of c.rows) {
      assert.ok(x.medianMs > 0 && x.p95Ms >= x.medianMs);
      assert.ok(Math.abs(x.ratio - x.medianMs / base) < 1e-12);
      assert.equal(x.samplesMs.length, 3, "one time per prompt");
      assert.equal(x.medianMs, median(x.samplesMs));
      assert.ok(Math.abs(x.pairedRatio - median(x.samplesMs.map((t: number, k: number) => t / c.rows[0].samplesMs[k]))) < 1e-12);
    }
    assert.equal(c.rows[0].pairedRatio, 1);
    // pooling: a d → 2 head (64·2 + 2); the probes' parameter counts are recorded
    assert.equal(c.rows[1].params, 130);
    const md = readFileSync(join(out, "cost.md"), "utf8");
    for (const x of c.rows) assert.ok(md.includes(`| ${x.variant} | ${x.medianMs.toFixed(2)} | ${x.p95Ms.toFixed(2)} | ${x.ratio.toFixed(2)} | ${x.pairedRatio.toFixed(2)} |`), x.variant);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
