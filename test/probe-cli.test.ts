// `onepass train` and `onepass eval` on feature caches made from planted synthetic hidden states.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { extractFeatures, type HiddenStateSource } from "../src/data/features.js";
import { plantedTask } from "./probe-synthetic.js";
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
    const t = cli("train", "--features", join(dir, "train"), "--probe", "scoring", "--search", "2", "--seeds", "2", "--epochs", "3", "--metric", "f1", "--quiet", "--out", probe);
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
    assert.ok(m.auprc > 0.5 && m.rocAuc > 0.5);
    assert.equal(m.layerWeightsByClass.length, 2);
    const html = readFileSync(report, "utf8");
    for (const title of ["Layer-gate weights", "Precision–recall", "ROC", "Confusion matrix", "Calibration"]) assert.ok(html.includes(title), title);
    assert.equal((html.match(/<svg /g) ?? []).length, 5);

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
