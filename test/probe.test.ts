import { test } from "node:test";
import assert from "node:assert/strict";
import { Probe, type ProbeConfig } from "../src/probe/probe.js";
import { arraySource, trainProbe, predictSource, stratifiedSplit, cosineLr } from "../src/probe/train.js";
import { accuracy, argmaxRows } from "../src/probe/metrics.js";
import { plantedTask } from "./probe-synthetic.js";

const L1 = 6, D = 16, PLANT_LAYER = 2, PLANT_POS = 1;
const trainTask = plantedTask(480, { layers: L1, dim: D, layer: PLANT_LAYER, position: PLANT_POS, seed: 11, mu: 6 });
const testTask = plantedTask(200, { layers: L1, dim: D, layer: PLANT_LAYER, position: PLANT_POS, seed: 12, mu: 6 });
const train = arraySource(trainTask.hidden, trainTask.labels);
const testSrc = arraySource(testTask.hidden, testTask.labels);

async function testAccuracy(probe: Probe): Promise<number> {
  const probs = await predictSource(probe, testSrc);
  return accuracy(testTask.labels, argmaxRows(probs, 2));
}

test("planted task: scoring probe finds the layer and the token", async () => {
  // Every layer here already has unit scale, so the test keeps raw inputs (standardisation is tested below).
  const r = await trainProbe({ kind: "scoring", standardize: false }, train, { lr: 3e-2, batchSize: 32, epochs: 10, seed: 1, metric: "accuracy" });
  const acc = await testAccuracy(r.probe);
  assert.ok(acc >= 0.95, `scoring accuracy ${acc}`);
  // the layer gate peaks at the planted layer for (almost) every prompt
  let hits = 0;
  for (const h of testTask.hidden.slice(0, 50)) {
    const w = (await r.probe.layerWeights(h))!;
    assert.equal(w.length, L1);
    assert.ok(Math.abs(w.reduce((a, b) => a + b, 0) - 1) < 1e-5);
    if (w.indexOf(Math.max(...w)) === PLANT_LAYER) hits++;
  }
  assert.ok(hits >= 45, `layer gate peaked at layer ${PLANT_LAYER} for ${hits}/50 prompts`);
});

test("planted task: MHA probe reaches ≥ 0.95", async () => {
  const r = await trainProbe({ kind: "mha", heads: 2, downcast: 2, pool: "mean" }, train, { lr: 1e-2, batchSize: 32, epochs: 10, seed: 1, metric: "accuracy" });
  const acc = await testAccuracy(r.probe);
  assert.ok(acc >= 0.95, `mha accuracy ${acc}`);
});

test("planted task: final-layer last-token probe stays near chance; fixed probe at the plant does not", async () => {
  const last = await trainProbe({ kind: "fixed" }, train, { lr: 1e-2, epochs: 10, seed: 1, metric: "accuracy" });
  const accLast = await testAccuracy(last.probe);
  assert.ok(accLast < 0.65, `final-layer last-token accuracy ${accLast} should be near 0.5`);
  // sanity of the baseline itself: the same template at the right layer (mean token) learns the task
  const right = await trainProbe({ kind: "fixed", layer: PLANT_LAYER, token: "mean" }, train, { lr: 1e-2, epochs: 10, seed: 1, metric: "accuracy" });
  assert.ok((await testAccuracy(right.probe)) > 0.8);
});

test("training is reproducible with the same seed and differs with another", async () => {
  const a = await trainProbe({ kind: "scoring" }, train, { lr: 1e-2, epochs: 2, seed: 7 });
  const b = await trainProbe({ kind: "scoring" }, train, { lr: 1e-2, epochs: 2, seed: 7 });
  const c = await trainProbe({ kind: "scoring" }, train, { lr: 1e-2, epochs: 2, seed: 8 });
  const pa = await predictSource(a.probe, testSrc), pb = await predictSource(b.probe, testSrc), pc = await predictSource(c.probe, testSrc);
  assert.deepEqual(Array.from(pa), Array.from(pb));
  assert.notDeepEqual(Array.from(pa), Array.from(pc));
});

test("parameter counts of the built probes match the paper's figures for Llama-3.2-3B (L = 28, d = 3072)", () => {
  const shape = (L: number, d: number) => ({ layers: L + 1, dim: d, classes: 2 });
  // Counted over the tensors the probes really hold (params()), against the numbers printed in the paper.
  const counted = (p: Probe) => [...p.params().values()].reduce((n, t) => n + t.size, 0);
  const scoring = new Probe({ kind: "scoring" }, shape(28, 3072));
  assert.equal(counted(scoring), scoring.parameterCount({ includeHead: true }));
  assert.ok(Math.abs(scoring.parameterCount() / 1e6 - 0.1) < 0.01, `scoring ${scoring.parameterCount()} (paper: ≈0.10M)`);
  assert.equal(scoring.parameterCount({ includeHead: true }) - scoring.parameterCount(), 3072 * 2 + 2); // the head d·C + C
  const pooling = new Probe({ kind: "pooling" }, shape(28, 3072));
  assert.equal(pooling.parameterCount(), 0);
  assert.equal(counted(pooling), 3072 * 2 + 2);
  // f = 32 allocates its 35M weights (≈140 MB, well under a second); f = 4 (paper ≈ 283M) would need 1.1 GB
  const mha = new Probe({ kind: "mha", heads: 8, downcast: 32 }, shape(28, 3072));
  assert.equal(counted(mha), mha.parameterCount({ includeHead: true }));
  assert.ok(Math.abs(mha.parameterCount() / 1e6 - 35) < 0.5, `mha f=32 ${mha.parameterCount()} (paper: ≈35M)`);
  // and f = 4 is 8× f = 32 on a small shape, as the paper's 283M ≈ 8 × 35M
  const f4 = new Probe({ kind: "mha", heads: 4, downcast: 4 }, shape(5, 64)).parameterCount();
  const f32 = new Probe({ kind: "mha", heads: 2, downcast: 32 }, shape(5, 64)).parameterCount();
  assert.equal(f4, 8 * f32);
});

test("stratified split keeps class ratios and is seeded; cosine schedule shape", () => {
  const labels = Array.from({ length: 100 }, (_, i) => (i < 80 ? 0 : 1));
  const s = stratifiedSplit(labels, 0.1, 3);
  assert.equal(s.val.filter((i) => labels[i] === 1).length, 2);
  assert.equal(s.val.filter((i) => labels[i] === 0).length, 8);
  assert.deepEqual(stratifiedSplit(labels, 0.1, 3), s);
  assert.equal(s.train.length + s.val.length, 100);
  assert.ok(Math.abs(cosineLr(1, 9, 100, 0.1) - 1) < 1e-12);
  assert.ok(Math.abs(cosineLr(1, 55, 100, 0.1) - 0.5) < 1e-12);
  assert.ok(cosineLr(1, 99, 100, 0.1) < 0.001);
});

test("pooling and fixed aggregators compute the hand-computed vectors (padding ignored)", async () => {
  const { HiddenStates } = await import("../src/types/hidden.js");
  const { Tape } = await import("../src/tensor/autograd.js");
  const { makeBatch } = await import("../src/tensor/batch.js");
  // two layers, d = 2; prompt A has 3 tokens, prompt B 1 token (padded to 3 in the batch)
  const a = new HiddenStates(2, 3, 2, Float32Array.from([1, 2, 3, -4, 5, 0, /* layer 1 */ -1, 7, 2, 2, 0, 1]));
  const b = new HiddenStates(2, 1, 2, Float32Array.from([-9, -8, /* layer 1 */ 4, -3]));
  const batch = makeBatch([a, b]);
  const v = async (config: ProbeConfig) => Array.from((await new Probe(config, { layers: 2, dim: 2, classes: 2 }).aggregator.forward(new Tape("f32", false), batch)).v.data);
  // mean: layer means A: [3, -2/3], [1/3, 10/3] → mean over layers [5/3, 4/3]; B: [-9,-8],[4,-3] → [-2.5, -5.5]
  const mean = await v({ kind: "pooling", pool: "mean" });
  [5 / 3, 4 / 3, -2.5, -5.5].forEach((x, i) => assert.ok(Math.abs(mean[i] - x) < 1e-6, `mean[${i}] ${mean[i]}`));
  // max: layer maxes A: [5, 2], [2, 7] → [5, 7]; B: [-9, -8], [4, -3] → [4, -3] (padding zeros never win)
  assert.deepEqual(await v({ kind: "pooling", pool: "max" }), [5, 7, 4, -3]);
  assert.deepEqual(await v({ kind: "fixed", layer: 1, token: "last" }), [0, 1, 4, -3]);
  assert.deepEqual(await v({ kind: "fixed", layer: 0, token: "last" }), [5, 0, -9, -8]);
  // scoring gates start at w = 0: uniform attention over real tokens and layers = mean pooling
  const sc = await v({ kind: "scoring" });
  mean.forEach((x, i) => assert.ok(Math.abs(sc[i] - x) < 1e-6, `scoring[${i}] ${sc[i]}`));
  const fm = await v({ kind: "fixed", layer: 1, token: "mean" });
  [1 / 3, 10 / 3, 4, -3].forEach((x, i) => assert.ok(Math.abs(fm[i] - x) < 1e-6));
});

test("Probe.run is the one inference path: predict, predictBatch, layerWeights, evaluateProbe and training's probabilities agree with it", async () => {
  const { evaluateProbe } = await import("../src/probe/evaluate.js");
  const { Rng } = await import("../src/numeric/rng.js");
  const hs = testTask.hidden.slice(0, 7); // lengths 6..10: batches are padded
  const rng = new Rng(4);
  for (const config of [{ kind: "scoring" }, { kind: "mha", heads: 2, downcast: 2 }, { kind: "pooling", pool: "max" }] as ProbeConfig[]) {
    const probe = new Probe(config, { layers: L1, dim: D, classes: 2 }, { seed: 2 });
    for (const t of probe.params().values()) for (let i = 0; i < t.size; i++) t.data[i] = rng.normal() * 0.3; // [any]
    const out = await probe.run(hs);
    assert.equal(out.probabilities.length, hs.length * 2);
    for (let i = 0; i < hs.length; i++) {
      assert.ok(Math.abs(out.probabilities[2 * i] + out.probabilities[2 * i + 1] - 1) < 1e-6);
      // one prompt alone (no padding) gives the same probabilities as inside the padded batch
      const alone = await probe.predict(hs[i]);
      assert.ok(Math.abs(alone[1] - out.probabilities[2 * i + 1]) < 1e-5, `${config.kind} prompt ${i}`);
    }
    assert.deepEqual(Array.from(await probe.predictBatch(hs, 3)).map((p) => +p.toFixed(5)), Array.from(out.probabilities, (p) => +p.toFixed(5)));
    if (config.kind === "scoring") {
      assert.equal(out.layerWeights?.length, hs.length * L1);
      const gate = (await probe.layerWeights(hs[0]))!; // [L+1]
      assert.ok(Math.abs(gate.reduce((a, b) => a + b, 0) - 1) < 1e-5);
      assert.deepEqual(Array.from(gate, (p) => +p.toFixed(5)), Array.from(out.layerWeights!.subarray(0, L1), (p) => +p.toFixed(5)));
    } else {
      assert.equal(out.layerWeights, undefined);
      assert.equal(await probe.layerWeights(hs[0]), undefined);
    }
    const ev = await evaluateProbe(probe, arraySource(hs, testTask.labels.slice(0, 7)), { batchSize: 4 });
    assert.deepEqual(Array.from(ev.probs, (p) => +p.toFixed(5)), Array.from(out.probabilities, (p) => +p.toFixed(5)));
    const viaTrain = await predictSource(probe, arraySource(hs, testTask.labels.slice(0, 7)), 5);
    assert.deepEqual(Array.from(viaTrain, (p) => +p.toFixed(5)), Array.from(out.probabilities, (p) => +p.toFixed(5)));
  }
  // aggregators without parameters: the head on aggregated vectors [B, d] equals the full path
  const pooling = new Probe({ kind: "pooling", pool: "mean" }, { layers: L1, dim: D, classes: 2 });
  for (const t of pooling.params().values()) for (let i = 0; i < t.size; i++) t.data[i] = rng.normal();
  const { Tape } = await import("../src/tensor/autograd.js");
  const { makeBatch } = await import("../src/tensor/batch.js");
  const { v } = await pooling.aggregator.forward(new Tape("f32", false), makeBatch(hs)); // [B, d]
  const viaVectors = await pooling.run({ aggregated: Float32Array.from(v.data) });
  const full = await pooling.run(hs);
  for (let i = 0; i < full.probabilities.length; i++) assert.ok(Math.abs(viaVectors.probabilities[i] - full.probabilities[i]) < 1e-6);
});

test("standardisation: per-layer statistics make each layer zero-mean, unit-variance and leave padding at 0", async () => {
  const { inputStatistics } = await import("../src/probe/probe.js");
  const { makeBatch } = await import("../src/tensor/batch.js");
  // layer l scaled by 10^l and shifted by 3l: the residual stream's growth with depth, exaggerated
  const hs = trainTask.hidden.slice(0, 40).map((h) => {
    const data = Float32Array.from(h.data, (v, k) => v * 10 ** Math.floor(k / (h.tokens * D)) + 3 * Math.floor(k / (h.tokens * D)));
    return new (h.constructor as typeof import("../src/types/hidden.js").HiddenStates)(h.layers, h.tokens, h.dim, data);
  });
  const norm = inputStatistics((i) => hs[i], hs.length);
  const probe = new Probe({ kind: "pooling", standardize: true }, { layers: L1, dim: D, classes: 2 });
  probe.norm = norm;
  const b = probe.standardizeBatch(makeBatch(hs));
  for (let l = 0; l < L1; l++) {
    let s = 0, sq = 0, n = 0;
    for (let i = 0; i < b.batch; i++) for (let t = 0; t < b.tokens; t++) {
      const row = ((l * b.batch + i) * b.tokens + t) * D;
      if (t >= b.lengths[i]) { for (let j = 0; j < D; j++) assert.equal(b.x[row + j], 0); continue; }
      for (let j = 2; j < D; j++) { s += b.x[row + j]; sq += b.x[row + j] ** 2; n++; } // dims 0, 1 carry the plant
    }
    assert.ok(Math.abs(s / n) < 1e-3, `layer ${l} mean ${s / n}`);
    assert.ok(Math.abs(sq / n - 1) < 1e-2, `layer ${l} variance ${sq / n}`);
  }
});

test("default recipe: a pooling probe finds a signal in a quiet layer that a loud layer drowns without standardisation", async () => {
  // Every token of layer 2 carries ±2 on dim 1; layer 5 carries noise 30× louder than the rest on every
  // dimension. Averaging raw layers buries the signal under layer 5; standardised layers keep it.
  const { HiddenStates } = await import("../src/types/hidden.js");
  const { Rng } = await import("../src/numeric/rng.js");
  const make = (n: number, seed: number) => {
    const rng = new Rng(seed);
    const hs: InstanceType<typeof HiddenStates>[] = [], ys: number[] = [];
    for (let i = 0; i < n; i++) {
      const T = 20 + rng.int(11), y = i % 2;
      const data = new Float32Array(L1 * T * D); // [L+1, T, d]
      for (let k = 0; k < data.length; k++) {
        const l = Math.floor(k / (T * D)), j = k % D;
        data[k] = rng.normal() * (l === 5 ? 30 : 1) + (l === 2 && j === 1 ? (y === 1 ? 2 : -2) : 0);
      }
      hs.push(new HiddenStates(L1, T, D, data));
      ys.push(y);
    }
    return { src: arraySource(hs, ys), labels: ys };
  };
  const tr = make(400, 21), te = make(200, 22);
  const acc = async (p: Probe) => accuracy(te.labels, argmaxRows(await predictSource(p, te.src), 2));
  const std = await trainProbe({ kind: "pooling" }, tr.src, { seed: 1 });
  const raw = await trainProbe({ kind: "pooling", standardize: false }, tr.src, { seed: 1 });
  assert.equal(std.probe.config.standardize, true);
  assert.equal(std.hyper.earlyStopping, "loss");
  assert.equal(std.metric, "accuracy"); // unknown task kind, balanced labels
  const a = await acc(std.probe), b = await acc(raw.probe);
  assert.ok(a >= 0.9 && a > b + 0.15, `standardised ${a}, raw ${b}`);
});

test("length-grouped batches: every example once per epoch, little padding, seeded; evaluation in length order keeps each row's gate weights", async () => {
  const { lengthGroupedBatches, lengthOrder } = await import("../src/probe/train.js");
  const { Rng } = await import("../src/numeric/rng.js");
  const { evaluateProbe } = await import("../src/probe/evaluate.js");
  const lenRng = new Rng(3);
  const lengths = Array.from({ length: 1000 }, () => 1 + Math.floor(256 * lenRng.next() ** 3)); // heavy-tailed like prompts
  const order = new Rng(5).shuffle(Array.from({ length: 1000 }, (_, i) => i));
  const batches = lengthGroupedBatches(order, 32, (i) => lengths[i], new Rng(9));
  assert.deepEqual(batches.flat().sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i));
  assert.ok(batches.every((b) => b.length <= 32) && batches.filter((b) => b.length < 32).length <= 2); // one short batch per window at most
  const cost = (bs: number[][]) => bs.reduce((a, b) => a + b.length * Math.max(...b.map((i) => lengths[i])) ** 2, 0); // padded T² work
  const random = Array.from({ length: Math.ceil(1000 / 32) }, (_, k) => order.slice(32 * k, 32 * k + 32));
  assert.ok(cost(batches) < cost(random) / 2, `grouped ${cost(batches)} vs random ${cost(random)}`);
  assert.deepEqual(lengthGroupedBatches(order, 32, (i) => lengths[i], new Rng(9)), batches);
  assert.notDeepEqual(lengthGroupedBatches(order, 32, (i) => lengths[i], new Rng(10)), batches);

  // Evaluation batches shortest first, but every row — probabilities and gate weights — is its own example's.
  const hs = testTask.hidden.slice(0, 9);
  const src = arraySource(hs, testTask.labels.slice(0, 9));
  const sorted = lengthOrder(src);
  assert.ok(sorted.some((i, k) => i !== k), "the slice must hold prompts out of length order");
  for (let k = 1; k < sorted.length; k++) assert.ok(hs[sorted[k - 1]].tokens <= hs[sorted[k]].tokens);
  const probe = new Probe({ kind: "scoring" }, { layers: L1, dim: D, classes: 2 }, { seed: 2 });
  const rng = new Rng(4);
  for (const t of probe.params().values()) for (let i = 0; i < t.size; i++) t.data[i] = rng.normal() * 0.3; // [any]
  const ev = await evaluateProbe(probe, src, { batchSize: 4 });
  const want = new Float64Array(L1); // [L+1] mean gate over class-0 prompts, one prompt at a time
  let n0 = 0;
  for (let i = 0; i < hs.length; i++) {
    assert.ok(Math.abs((await probe.predict(hs[i]))[1] - ev.probs[2 * i + 1]) < 1e-5, `prompt ${i}`);
    if (testTask.labels[i] !== 0) continue;
    n0++;
    const w = (await probe.layerWeights(hs[i]))!;
    for (let l = 0; l < L1; l++) want[l] += w[l];
  }
  for (let l = 0; l < L1; l++) assert.ok(Math.abs(want[l] / n0 - ev.layerWeightsByClass![0][l]) < 1e-5, `layer ${l}`);
});
