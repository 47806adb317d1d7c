import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Probe } from "../src/probe/probe.js";
import { loadProbe, saveProbe } from "../src/probe/artifact.js";
import { ModelMismatchError, ProbeError } from "../src/errors.js";
import { Rng } from "../src/numeric/rng.js";
import { plantedTask } from "./probe-synthetic.js";
import { tempDir } from "./helpers.js";

const FP = "a".repeat(64);
const task = plantedTask(8, { layers: 4, dim: 16, layer: 1, position: 0, seed: 3 });

function randomized(probe: Probe, seed: number): Probe {
  const rng = new Rng(seed);
  for (const p of probe.params().values()) for (let i = 0; i < p.size; i++) p.data[i] = rng.normal() * 0.3;
  return probe;
}

test("save → load gives identical predictions and metadata (scoring, mha, pooling, fixed)", async () => {
  const dir = tempDir("probe");
  try {
    for (const config of [{ kind: "scoring" }, { kind: "mha", heads: 2, downcast: 4, pool: "max" }, { kind: "pooling", pool: "max" }, { kind: "fixed", layer: 2, token: "mean" }] as const) {
      const probe = randomized(new Probe(config, { layers: 4, dim: 16, classes: 3 }, { seed: 1 }), 9);
      const out = join(dir, config.kind);
      saveProbe(out, probe, { labelNames: ["a", "b", "c"], model: { fingerprint: FP, blocks: 3, dim: 16 }, threshold: undefined });
      const loaded = loadProbe(out, { expectFingerprint: FP });
      assert.deepEqual(loaded.meta.config, probe.config);
      assert.deepEqual(loaded.meta.labelNames, ["a", "b", "c"]);
      assert.equal(loaded.meta.parameterCount.aggregator, probe.parameterCount());
      const a = await probe.predictBatch(task.hidden), b = await loaded.probe.predictBatch(task.hidden);
      assert.deepEqual(Array.from(b), Array.from(a));
      // saving again over the folder replaces it atomically (no temp folders left behind)
      saveProbe(out, probe, { labelNames: ["a", "b", "c"], model: { fingerprint: FP, blocks: 3, dim: 16 } });
    }
    assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith(".")), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("loading against another model's fingerprint → ModelMismatchError naming probe.json and the field", () => {
  const dir = tempDir("probe");
  try {
    const probe = new Probe({ kind: "scoring" }, { layers: 4, dim: 16, classes: 2 });
    saveProbe(dir, probe, { labelNames: ["neg", "pos"], model: { fingerprint: FP, blocks: 3, dim: 16 }, threshold: 0.4 });
    assert.equal(loadProbe(dir).meta.threshold, 0.4);
    // a probe.json written before the rename (model.layers = L) still loads, as model.blocks
    const json = join(dir, "probe.json");
    const text = readFileSync(json, "utf8");
    assert.ok(text.includes('"blocks": 3'));
    writeFileSync(json, text.replace('"blocks": 3', '"layers": 3'));
    assert.deepEqual(loadProbe(dir).meta.model, { fingerprint: FP, blocks: 3, dim: 16 });
    assert.throws(
      () => loadProbe(dir, { expectFingerprint: "b".repeat(64) }),
      (e: unknown) => e instanceof ModelMismatchError && e.file === join(dir, "probe.json") && e.field === "model.fingerprint",
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("malformed probe folders → ProbeError naming file and field", () => {
  const dir = tempDir("probe");
  try {
    assert.throws(() => loadProbe(join(dir, "nope")), ProbeError);
    const probe = new Probe({ kind: "scoring" }, { layers: 4, dim: 16, classes: 2 });
    saveProbe(dir, probe, { labelNames: ["neg", "pos"], model: { fingerprint: FP, blocks: 3, dim: 16 } });
    const json = join(dir, "probe.json");
    const good = readFileSync(json, "utf8");
    writeFileSync(json, good.replace('"neg"', "17"));
    assert.throws(() => loadProbe(dir), (e: unknown) => e instanceof ProbeError && e.field === "labelNames" && e.file === json);
    writeFileSync(json, good.replace('"dim": 16', '"dim": 8'));
    assert.throws(() => loadProbe(dir), (e: unknown) => e instanceof ProbeError && e.field === "scoring.token_gate");
    writeFileSync(json, good.slice(0, 40));
    assert.throws(() => loadProbe(dir), (e: unknown) => e instanceof ProbeError && e.file === json);
    writeFileSync(json, good);
    const w = join(dir, "weights.safetensors");
    writeFileSync(w, readFileSync(w).subarray(0, 100));
    assert.throws(() => loadProbe(dir), (e: unknown) => e instanceof ProbeError && e.file === w);
    assert.ok(existsSync(json));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a standardised probe saves and loads its input statistics; without them it is refused", async () => {
  const dir = tempDir("probe");
  try {
    const { inputStatistics } = await import("../src/probe/probe.js");
    const probe = randomized(new Probe({ kind: "scoring", standardize: true }, { layers: 4, dim: 16, classes: 2 }, { seed: 1 }), 5);
    probe.norm = inputStatistics((i) => task.hidden[i], task.hidden.length);
    const out = join(dir, "std");
    saveProbe(out, probe, { labelNames: ["a", "b"], model: { fingerprint: FP, blocks: 3, dim: 16 } });
    const loaded = loadProbe(out);
    assert.deepEqual(Array.from(loaded.probe.norm!.std), Array.from(probe.norm.std));
    const a = await probe.predictBatch(task.hidden), b = await loaded.probe.predictBatch(task.hidden);
    assert.deepEqual(Array.from(b), Array.from(a));
    // the statistics change the output: a probe without them is not the same probe
    const plain = new Probe({ kind: "scoring" }, probe.shape);
    for (const [n, t] of probe.params()) plain.params().get(n)!.data.set(t.data);
    assert.notDeepEqual(Array.from(await plain.predictBatch(task.hidden)), Array.from(a));
    // weights written without norm.* (e.g. by hand) → ProbeError naming the tensor
    const bare = join(dir, "bare");
    saveProbe(bare, plain, { labelNames: ["a", "b"], model: { fingerprint: FP, blocks: 3, dim: 16 } });
    const json = JSON.parse(readFileSync(join(bare, "probe.json"), "utf8"));
    json.config.standardize = true;
    writeFileSync(join(bare, "probe.json"), JSON.stringify(json));
    assert.throws(() => loadProbe(bare), (e: unknown) => e instanceof ProbeError && e.field === "norm.mean");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
