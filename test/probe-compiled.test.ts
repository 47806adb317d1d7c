// Compiled probes (src/probe/compiled.ts) against the training forward (Probe.forward through the tape):
// equal class probabilities and layer weights (≤ 1e-5) for every kind, random and trained weights, padded
// batches, on the built-in model's shape (real hidden states) and on a random Qwen2.5-0.5B shape (L+1 25, d 896).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Engine } from "../src/engine/engine.js";
import { HiddenStates } from "../src/types/hidden.js";
import { InvalidArgumentError } from "../src/errors.js";
import { makeBatch } from "../src/tensor/batch.js";
import { CompiledProbes, compiledProbesFor } from "../src/probe/compiled.js";
import { Probe, softmaxRows } from "../src/probe/probe.js";
import { Tape } from "../src/tensor/autograd.js";
import { Rng } from "../src/numeric/rng.js";
import { arraySource, trainProbe } from "../src/probe/train.js";
import { PROBE_KINDS, probeKindLabel, randomizeProbe, STORIES260K, maxAbsDiff } from "./helpers.js";

const KINDS = PROBE_KINDS;
const label = probeKindLabel;

function randomHidden(rng: Rng, layers: number, tokens: number, dim: number): HiddenStates {
  const data = new Float32Array(layers * tokens * dim); // [L+1, T, d]
  for (let i = 0; i < data.length; i++) data[i] = rng.normal() * (1 + (i % 7));
  return new HiddenStates(layers, tokens, dim, data);
}

const randomize = randomizeProbe;

/** Training-path probabilities [N, C] and layer weights [N, L+1] for a padded batch of `hs`. */
async function reference(probe: Probe, hs: HiddenStates[]): Promise<{ probs: Float32Array; gate?: Float32Array }> {
  const out = await probe.forward(new Tape("f32", false), makeBatch(hs));
  return { probs: softmaxRows(out.logits.data, probe.shape.classes), gate: out.layerWeights ? Float32Array.from(out.layerWeights.data) : undefined };
}

/**
 * Compiled = training path on the padded batch `hs` (the padded graph), and on unpadded batches (the dense
 * graph a live prompt runs): each example alone (B = 1) and the first twice (B = 2, equal lengths).
 */
async function assertEqual(probes: Probe[], hs: HiddenStates[], what: string): Promise<void> {
  await assertEqualOn(probes, hs, `${what} padded`);
  assert.ok(makeBatch(hs).mask.some((m) => m === 0), `${what}: the batch must hold padding`);
  for (let i = 0; i < hs.length; i++) await assertEqualOn(probes, [hs[i]], `${what} alone #${i}`, false);
  await assertEqualOn(probes, [hs[0], hs[0]], `${what} B=2 unpadded`, false);
}

async function assertEqualOn(probes: Probe[], hs: HiddenStates[], what: string, checkSpread = true): Promise<void> {
  const compiled = await CompiledProbes.create(probes);
  try {
    const outs = await compiled.runBatch(makeBatch(hs));
    for (let i = 0; i < probes.length; i++) {
      const ref = await reference(probes[i], hs);
      const d = maxAbsDiff(outs[i].probabilities, ref.probs);
      assert.ok(d <= 1e-5, `${what} ${label(probes[i].config)}: compiled vs training probabilities differ by ${d}`);
      // probabilities must not be trivially equal (all 0.5): the check would then prove nothing
      // (on a batch of several prompts; one prompt's two binary probabilities may be close by chance)
      if (checkSpread) assert.ok(Math.max(...ref.probs) - Math.min(...ref.probs) > 1e-3, `${what} ${label(probes[i].config)}: degenerate probabilities`);
      if (ref.gate !== undefined) {
        assert.ok(maxAbsDiff(outs[i].layerWeights!, ref.gate) <= 1e-5, `${what}: layer weights differ`);
      } else assert.equal(outs[i].layerWeights, undefined);
    }
  } finally {
    await compiled.dispose();
  }
}

let engine: Engine;
let real: HiddenStates[] = [];
before(async () => {
  engine = await Engine.load(STORIES260K, { taps: true });
  for (const p of ["Once upon a time", "Lily", "The cat sat on the mat and looked at the big red ball", "Tom was sad."]) {
    real.push((await engine.forward(p, { hidden: true })).hidden!);
  }
});
after(async () => {
  await engine?.dispose();
});

test("stories260K shape, random weights: every kind, one compiled set, padded batch (lengths differ)", async () => {
  const { layers, dim } = real[0];
  const probes = KINDS.map((c, i) => randomize(new Probe(c, { layers, dim, classes: 3 }, { seed: i }), 100 + i));
  assert.ok(new Set(real.map((h) => h.tokens)).size > 1, "the batch must be padded");
  await assertEqual(probes, real, "stories260K random");
});

test("standardised probes (saved norm.mean/norm.std): compiled = training path for every kind", async () => {
  const { layers, dim } = real[0];
  const { inputStatistics } = await import("../src/probe/probe.js");
  const norm = inputStatistics((i) => real[i], real.length); // [L+1, d] each
  const probes = KINDS.map((c, i) => {
    const p = randomize(new Probe({ ...c, standardize: true }, { layers, dim, classes: 3 }, { seed: i }), 200 + i);
    p.norm = norm;
    return p;
  });
  await assertEqual(probes, real, "stories260K standardised");
  // without its statistics the standardised graph would read raw states: the compiled output must differ
  const raw = await CompiledProbes.create([randomize(new Probe(KINDS[0], { layers, dim, classes: 3 }, { seed: 0 }), 200)]);
  try {
    const std = (await CompiledProbes.create([probes[0]]));
    try {
      const a = (await raw.runBatch(makeBatch(real)))[0].probabilities, b = (await std.runBatch(makeBatch(real)))[0].probabilities;
      assert.ok(maxAbsDiff(a, b) > 1e-3, "standardisation changed nothing");
    } finally {
      await std.dispose();
    }
  } finally {
    await raw.dispose();
  }
});

test("stories260K shape, trained weights: every kind trained briefly on real hidden states", async () => {
  const { layers, dim } = real[0];
  const hs: HiddenStates[] = [];
  const labels: number[] = [];
  const rng = new Rng(5);
  for (let i = 0; i < 24; i++) {
    const h = real[i % real.length];
    const data = Float32Array.from(h.data, (v) => v + rng.normal() * 0.1);
    hs.push(new HiddenStates(h.layers, h.tokens, h.dim, data));
    labels.push(i % 2);
  }
  const probes: Probe[] = [];
  for (const c of KINDS) {
    const r = await trainProbe(c, arraySource(hs, labels), { lr: 1e-2, epochs: 2, batchSize: 8, seed: 0, metric: "accuracy" });
    probes.push(r.probe);
  }
  assert.equal(probes[0].shape.layers, layers);
  assert.equal(probes[0].shape.dim, dim);
  // trained weights moved off their initial values (zero-initialised gates, heads)
  assert.ok(probes[2].params().get("scoring.token_gate")!.data.some((v) => v !== 0));
  await assertEqual(probes, real, "stories260K trained");
});

test("random Qwen2.5-0.5B shape (L+1 25, d 896): every kind, random and trained weights, padded", async () => {
  const rng = new Rng(9);
  const hs = [3, 7, 1, 5].map((t) => randomHidden(rng, 25, t, 896));
  const shape = { layers: 25, dim: 896, classes: 2 };
  // the benchmarks' MHA shape (H 8, f 8) for mean pooling; f 16 for max keeps the test short
  const configs = KINDS.map((c) => (c.kind === "mha" ? { ...c, heads: 8, downcast: c.pool === "mean" ? 8 : 16 } : c));
  await assertEqual(configs.map((c, i) => randomize(new Probe(c, shape, { seed: i }), 200 + i)), hs, "0.5B random");
  const trained: Probe[] = [];
  for (const c of configs) {
    trained.push((await trainProbe(c, arraySource(hs.concat(hs), [0, 1, 0, 1, 1, 0, 1, 0]), { lr: 1e-2, epochs: 1, batchSize: 4, seed: 0, valFraction: 0.25, metric: "accuracy" })).probe);
  }
  await assertEqual(trained, hs, "0.5B trained");
});

test("one prompt's HiddenStates run without padding; the cached set is reused; bad input is a typed error", async () => {
  const { layers, dim } = real[0];
  const probes = [randomize(new Probe({ kind: "scoring" }, { layers, dim, classes: 2 }), 1), new Probe({ kind: "pooling" }, { layers, dim, classes: 2 })];
  const a = await compiledProbesFor(probes);
  assert.equal(await compiledProbesFor(probes), a);
  const [s, p] = await a.runHidden(real[2]);
  assert.ok(maxAbsDiff(s.probabilities, await probes[0].predict(real[2])) <= 1e-5);
  assert.ok(maxAbsDiff(p.probabilities, await probes[1].predict(real[2])) <= 1e-5);
  await assert.rejects(a.runHidden(new HiddenStates(layers - 1, 2, dim, new Float32Array((layers - 1) * 2 * dim))), InvalidArgumentError);
  await assert.rejects(a.run(new Float32Array(5), 1, 1), InvalidArgumentError);
  // no tokens (or a batch row with none): a typed error, not NaN or 0.5 probabilities
  await assert.rejects(a.run(new Float32Array(0), 1, 0), InvalidArgumentError);
  await assert.rejects(a.run(new Float32Array(layers * 2 * 2 * dim), 2, 2, Uint8Array.of(1, 1, 0, 0)), /prompt 1 of the batch has no real token/);
  assert.throws(() => compiledProbesFor([]), InvalidArgumentError);
  await assert.rejects(CompiledProbes.create([probes[0], new Probe({ kind: "pooling" }, { layers, dim: dim * 2, classes: 2 })]), InvalidArgumentError);
});
