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

async function cache(dir: string, n: number, seed: number, fingerprint: string, mode: "full" | "summary" = "full"): Promise<void> {
  const task = plantedTask(n, { layers: 4, dim: 16, layer: 1, position: 0, seed });
  const byText = new Map(task.hidden.map((h, i) => [`prompt ${i}`, h]));
  const source: HiddenStateSource = {
    fingerprint, layers: 4, dim: 16, tokenization: { addBos: true, template: "raw" },
    async hidden(text) { return byText.get(text)!; },
  };
  const examples = task.labels.map((label, i) => ({ text: `prompt ${i}`, label }));
  await extractFeatures({ source, examples, labelNames: ["neg", "pos"], outDir: dir, mode });
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
