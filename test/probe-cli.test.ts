// `onepass train` and `onepass eval` on feature caches made from planted synthetic hidden states.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { extractFeatures, openFeatureCache, type HiddenStateSource } from "../src/data/features.js";
import { plantedTask } from "./probe-synthetic.js";
import { loadProbe } from "../src/probe/artifact.js";
import { tempDir } from "./helpers.js";

const CLI = "dist/src/cli/main.js";
const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });

async function cache(dir: string, n: number, seed: number, fingerprint: string, mode: "full" | "summary" = "full", labelNames = ["neg", "pos"]): Promise<void> {
  const task = plantedTask(n, { layers: 4, dim: 16, layer: 1, position: 0, seed });
  const byText = new Map(task.hidden.map((h, i) => [`prompt ${i}`, h]));
  const source: HiddenStateSource = {
    fingerprint, layers: 4, dim: 16, tokenization: { addBos: true, template: "raw" },
    async hidden(text) { return byText.get(text)!; },
  };
  const examples = task.labels.map((label, i) => ({ text: `prompt ${i}`, label }));
  await extractFeatures({ source, examples, labelNames, outDir: dir, mode });
}

test("train (search + seeds) → eval with HTML report; wrong model and summary caches are refused", async () => {
  const dir = tempDir("probe-cli");
  try {
    await cache(join(dir, "train"), 240, 21, "model-A");
    await cache(join(dir, "test"), 100, 22, "model-A");
    await cache(join(dir, "other"), 20, 23, "model-B");
    await cache(join(dir, "summary"), 40, 24, "model-A", "summary");
    const probe = join(dir, "probe");
    const t = cli("train", "--features", join(dir, "train"), "--probe", "scoring", "--search", "2", "--seeds", "2", "--epochs", "10", "--metric", "f1", "--quiet", "--out", probe);
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stdout, /mean ± std over 2 seeds/);
    const meta = JSON.parse(readFileSync(join(probe, "probe.json"), "utf8"));
    assert.equal(meta.model.fingerprint, "model-A");
    assert.deepEqual(meta.labelNames, ["neg", "pos"]);
    assert.equal(meta.parameterCount.aggregator, (3 + 2) * 16); // (L+2)·d with L = 3
    assert.equal(typeof meta.threshold, "number"); // F1 selection → threshold on validation
    assert.equal(meta.seeds.values.length, 2);
    assert.ok(meta.hyper.lr >= 1e-5 && meta.hyper.lr <= 1e-1);

    const report = join(dir, "report.html");
    const e = cli("eval", "--probe", probe, "--features", join(dir, "test"), "--report", report, "--json");
    assert.equal(e.status, 0, e.stderr);
    const m = JSON.parse(e.stdout);
    assert.equal(m.n, 100);
    // Recompute from the saved probe and the planted test set, with ROC-AUC counted over pairs here
    // (Mann–Whitney), not by the metrics module: the CLI must report exactly these numbers.
    // the same inputs as the CLI: the cache's (f16-rounded) states, in eval's batches of 32 (padding changes the
    // last float bits, enough to swap two nearly tied scores)
    const testCache = openFeatureCache(join(dir, "test"));
    const testTask = { hidden: Array.from({ length: testCache.size }, (_, i) => testCache.get(i)), labels: Array.from(testCache.labels) };
    const loaded = loadProbe(probe);
    const probs = await loaded.probe.predictBatch(testTask.hidden, 32); // [N, 2]
    const pos: number[] = [], neg: number[] = [];
    testTask.labels.forEach((y, i) => (y === 1 ? pos : neg).push(probs[2 * i + 1]));
    let wins = 0;
    for (const p of pos) for (const q of neg) wins += p > q ? 1 : p === q ? 0.5 : 0;
    const auc = wins / (pos.length * neg.length);
    assert.ok(Math.abs(m.rocAuc - auc) < 1e-9, `CLI ROC-AUC ${m.rocAuc}, recomputed ${auc}`);
    // average precision: mean precision at the rank of each positive, scores descending (no ties here)
    const ranked = testTask.labels.map((y, i) => ({ y, s: probs[2 * i + 1] })).sort((a, b) => b.s - a.s);
    let hits = 0, apSum = 0;
    ranked.forEach((r, k) => { if (r.y === 1) apSum += ++hits / (k + 1); });
    const ap = apSum / pos.length;
    assert.ok(Math.abs(m.auprc - ap) < 1e-9, `CLI AUPRC ${m.auprc}, recomputed ${ap}`);
    // 10 epochs find the planted token only partly (ROC-AUC 0.86 here, deterministic for these seeds); chance is 0.5
    assert.ok(auc >= 0.75 && ap >= 0.75, `the planted signal should be found: ROC-AUC ${auc}, AUPRC ${ap}`);
    assert.equal(m.layerWeightsByClass.length, 2);
    for (const row of m.layerWeightsByClass) assert.ok(Math.abs(row.reduce((a: number, b: number) => a + b, 0) - 1) < 1e-5);
    const html = readFileSync(report, "utf8");
    for (const title of ["Layer-gate weights", "Precision–recall", "ROC", "Confusion matrix", "Calibration"]) assert.ok(html.includes(title), title);
    assert.equal((html.match(/<svg /g) ?? []).length, 5);
    // the report's confusion matrix holds the counts of the probe's thresholded decisions
    const cm = [[0, 0], [0, 0]];
    testTask.labels.forEach((y, i) => cm[y][probs[2 * i + 1] >= loaded.meta.threshold! ? 1 : 0]++);
    const figure = html.slice(html.indexOf("Confusion matrix"));
    const cells = [...figure.matchAll(/text-anchor="middle">(\d+)<\/text>/g)].slice(0, 4).map((x) => Number(x[1]));
    assert.deepEqual(cells, cm.flat());
    assert.ok(html.includes(`ROC (AUC ${auc.toFixed(3)})`));

    const wrong = cli("eval", "--probe", probe, "--features", join(dir, "other"));
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /probe\.json, field model\.fingerprint/);

    const summary = cli("train", "--features", join(dir, "summary"), "--probe", "mha", "--out", join(dir, "p2"), "--quiet");
    assert.equal(summary.status, 1);
    assert.match(summary.stderr, /field mode/);
    assert.ok(!existsSync(join(dir, "p2")));
    const pooled = cli("train", "--features", join(dir, "summary"), "--probe", "pooling", "--pool", "max", "--lr", "1e-2", "--out", join(dir, "p3"), "--quiet");
    assert.equal(pooled.status, 0, pooled.stderr);

    const bad = cli("train", "--features", join(dir, "train"), "--probe", "mha", "--downcast", "3", "--out", join(dir, "p4"));
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /field downcast/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("eval --label-map scores a named-label probe on a 0/1-labelled cache; without it, a one-line hint", async () => {
  const dir = tempDir("probe-cli");
  try {
    await cache(join(dir, "train"), 200, 31, "model-A");
    await cache(join(dir, "named"), 80, 32, "model-A");
    await cache(join(dir, "ids"), 80, 32, "model-A", "full", ["0", "1"]); // same examples, labels named 0/1
    const probe = join(dir, "probe");
    assert.equal(cli("train", "--features", join(dir, "train"), "--probe", "fixed", "--layer", "1", "--token", "mean", "--quiet", "--out", probe).status, 0);
    const refused = cli("eval", "--probe", probe, "--features", join(dir, "ids"), "--json");
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /--label-map 0=neg,1=pos/);
    assert.equal(refused.stderr.trim().split("\n").length, 1);
    const named = JSON.parse(cli("eval", "--probe", probe, "--features", join(dir, "named"), "--json").stdout);
    const mapped = cli("eval", "--probe", probe, "--features", join(dir, "ids"), "--label-map", "0=neg,1=pos", "--json");
    assert.equal(mapped.status, 0, mapped.stderr);
    assert.deepEqual(JSON.parse(mapped.stdout), named);
    assert.ok(named.accuracy > 0.8, `accuracy ${named.accuracy}`);
    // the map is applied, not ignored: swapping it swaps what counts as correct
    const swapped = JSON.parse(cli("eval", "--probe", probe, "--features", join(dir, "ids"), "--label-map", "0=pos,1=neg", "--json").stdout);
    assert.ok(Math.abs(swapped.accuracy - (1 - named.accuracy)) < 1e-9);
    for (const [bad, why] of [["0=neg,1=neg", /both map to probe label 'neg'/], ["0=neg,2=pos", /'2' is not a dataset label/], ["0=toxic", /'toxic' is not a probe label/], ["0neg", /not FROM=TO/]] as const) {
      const r = cli("eval", "--probe", probe, "--features", join(dir, "ids"), "--label-map", bad);
      assert.equal(r.status, 1);
      assert.match(r.stderr, why);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
