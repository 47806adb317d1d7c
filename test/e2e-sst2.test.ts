// End to end on the bundled stories260K and SST-2 (Palma et al. 2025 subset): extract hidden states with the
// engine, train a scoring probe, evaluate on held-out test prompts, save, and classify through the CLI.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { loadDataset } from "../src/data/datasets.js";
import { extractFeatures, openFeatureCache } from "../src/data/features.js";
import { engineSource } from "../src/data/source.js";
import { Engine } from "../src/engine/engine.js";
import { loadProbe, saveProbe } from "../src/probe/artifact.js";
import { cacheSource } from "../src/probe/cache-source.js";
import { evaluateProbe } from "../src/probe/evaluate.js";
import { trainProbe } from "../src/probe/train.js";
import { STORIES260K, tempDir } from "./helpers.js";

const MODEL = STORIES260K;

test("SST-2 on stories260K: a scoring probe trained with no options beats the majority class on held-out prompts", async () => {
  const dir = tempDir("e2e");
  const engine = await Engine.load(MODEL, { taps: true });
  try {
    const source = engineSource(engine);
    const caches: Record<string, string> = {};
    for (const [split, limit] of [["train", 1500], ["test", 500]] as const) {
      const ds = await loadDataset({ files: [{ path: `test/fixtures/palma2025/sst2_${split}.csv` }], limit });
      caches[split] = join(dir, split);
      await extractFeatures({ source, examples: ds.examples, labelNames: ds.labelNames, outDir: caches[split] });
    }
    const train = openFeatureCache(caches.train), testCache = openFeatureCache(caches.test);
    // No flags, as `onepass train --probe scoring` on a plain CSV (task kind unknown): balanced labels must
    // select on accuracy, and the default recipe must learn (it once stopped at epoch 1 on one class).
    const r = await trainProbe({ kind: "scoring" }, cacheSource(train, { kind: "scoring" }), { seed: 0 });
    assert.equal(r.metric, "accuracy");
    const ev = await evaluateProbe(r.probe, cacheSource(testCache, { kind: "scoring" }));
    const positives = Array.from(testCache.labels).filter((y) => y === 1).length;
    const majority = Math.max(positives, testCache.size - positives) / testCache.size;
    console.log(`# SST-2 (1500 train / 500 test, stories260K, scoring probe): test accuracy ${ev.metrics.accuracy.toFixed(3)}, majority ${majority.toFixed(3)}, ROC-AUC ${ev.metrics.rocAuc!.toFixed(3)}, ${r.examplesPerSecond.toFixed(0)} train ex/s`);
    assert.ok(ev.metrics.accuracy >= majority + 0.05, `accuracy ${ev.metrics.accuracy} vs majority ${majority}`);
    assert.ok(ev.metrics.rocAuc! > 0.6);
    assert.ok(ev.metrics.macroF1 > 0.55, `macro-F1 ${ev.metrics.macroF1}: one class predicted almost always`);

    // The saved probe, used through `onepass classify`, agrees with the library on a test prompt.
    const probeDir = join(dir, "probe");
    saveProbe(probeDir, r.probe, {
      labelNames: train.labelNames,
      model: { fingerprint: train.manifest.model.fingerprint, blocks: engine.spec.blocks, dim: engine.spec.dim },
      tokenization: train.manifest.tokenization,
    });
    assert.equal(train.manifest.model.fingerprint, engine.fingerprint);
    const text = "a gorgeous , witty , seductive movie .";
    const expected = await loadProbe(probeDir, { expectFingerprint: engine.fingerprint }).probe.predict((await engine.forward(text, { hidden: true })).hidden!);
    const out = spawnSync(process.execPath, ["dist/src/cli/main.js", "classify", "--model", MODEL, "--probe", probeDir, "--text", text, "--json"], { encoding: "utf8" });
    assert.equal(out.status, 0, out.stderr);
    const res = JSON.parse(out.stdout) as { label: string; probabilities: Record<string, number>; layerWeights: number[] };
    assert.ok(Math.abs(res.probabilities[train.labelNames[1]] - expected[1]) < 1e-5);
    assert.equal(res.layerWeights.length, engine.spec.blocks + 1);
    train.close();
    testCache.close();
  } finally {
    await engine.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});
