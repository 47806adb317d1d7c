import { test } from "node:test";
import assert from "node:assert/strict";
import { Sampler, argmax, greedyPick, samplingDistribution, topKIndices } from "../src/engine/sampler.js";
import { Rng } from "../src/numeric/rng.js";
import { InvalidArgumentError } from "../src/errors.js";

/** Deterministic pseudo-random logits (a different generator from the sampler's). */
function randomLogits(v: number, seed: number, scale = 4): Float32Array {
  let x = seed >>> 0;
  const out = new Float32Array(v); // [V]
  for (let i = 0; i < v; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = (x / 2 ** 32 - 0.5) * 2 * scale;
  }
  return out;
}

function softmax(logits: ArrayLike<number>, temperature = 1): number[] {
  const xs = Array.from(logits, (x) => x / temperature);
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

test("xoshiro128** matches the reference implementation's published vector", () => {
  // From state {1, 2, 3, 4}: the values rand_xoshiro's test lists, produced with Vigna's xoshiro128starstar.c.
  const r = Rng.fromState(1, 2, 3, 4);
  assert.deepEqual(
    Array.from({ length: 10 }, () => r.nextU32()),
    [11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804],
  );
});

test("seeded Rng streams are reproducible, distinct per seed, uniform in [0, 1)", () => {
  // Same seed → same stream; different seeds → different streams; values in [0, 1).
  const a = new Rng(42);
  const b = new Rng(42);
  const c = new Rng(43);
  const sa = Array.from({ length: 1000 }, () => a.next());
  const sb = Array.from({ length: 1000 }, () => b.next());
  const sc = Array.from({ length: 1000 }, () => c.next());
  assert.deepEqual(sa, sb);
  assert.notDeepEqual(sa, sc);
  assert.ok(sa.every((u) => u >= 0 && u < 1));
  const mean = sa.reduce((x, y) => x + y, 0) / sa.length;
  assert.ok(Math.abs(mean - 0.5) < 0.03, `mean ${mean}`);
});

test("seeded sampling is reproducible and seeds differ", () => {
  const logits = randomLogits(5000, 7, 2);
  const run = (seed: number) => {
    const s = new Sampler({ temperature: 0.9, topP: 0.95, topK: 200, seed });
    return Array.from({ length: 200 }, () => s.sample(logits));
  };
  assert.deepEqual(run(123), run(123));
  assert.notDeepEqual(run(123), run(124));
});

test("greedy: temperature 0 and top-k = 1 both give the argmax", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const logits = randomLogits(1000, seed);
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    assert.equal(argmax(logits), best);
    assert.equal(new Sampler({ temperature: 0, seed }).sample(logits), best);
    assert.equal(new Sampler({ temperature: 1.5, topK: 1, seed }).sample(logits), best);
  }
});

test("greedyPick: the argmax (first on ties, NaN never chosen, 0 when all are -Infinity) and whether every logit is finite, at every length mod 4", () => {
  for (const v of [1, 2, 3, 4, 5, 7, 1001, 151_936]) {
    for (let seed = 1; seed <= 3; seed++) {
      const logits = randomLogits(v, seed * 7 + v);
      let best = 0;
      for (let i = 1; i < v; i++) if (logits[i] > logits[best]) best = i;
      assert.deepEqual(greedyPick(logits), { token: best, finite: true }, `V ${v} seed ${seed}`);
      // a non-finite logit anywhere, the unrolled body or the tail, clears the flag
      for (const at of new Set([0, v - 1, Math.floor(v / 2)])) {
        for (const bad of [NaN, Infinity, -Infinity]) {
          const edited = Float32Array.from(logits);
          edited[at] = bad;
          const pick = greedyPick(edited);
          assert.equal(pick.finite, false, `V ${v}: ${bad} at ${at}`);
          if (bad === Infinity) assert.equal(pick.token, at);
          else if (at !== best) assert.equal(pick.token, best, `V ${v}: ${bad} at ${at} is never chosen`);
        }
      }
    }
  }
  assert.deepEqual(greedyPick(Float32Array.from([1, 5, 5, 2, 5])), { token: 1, finite: true }, "the first of equal maxima");
  assert.deepEqual(greedyPick(Float32Array.from([NaN, 1, NaN, 0.5, 2, NaN, NaN])), { token: 4, finite: false });
  assert.deepEqual(greedyPick(Float32Array.from([-Infinity, -Infinity, -Infinity, -Infinity, -Infinity])), { token: 0, finite: false });
  assert.deepEqual(greedyPick(Float32Array.from([NaN, NaN, NaN])), { token: 0, finite: false });
});

test("topKIndices returns the k largest, largest first (checked against a full sort)", () => {
  const logits = randomLogits(30000, 99);
  const sorted = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
  for (const k of [1, 5, 64, 1000]) {
    assert.deepEqual(Array.from(topKIndices(logits, k)), sorted.slice(0, k));
  }
});

test("top-p keeps the minimal nucleus of a hand-made distribution", () => {
  // probabilities 0.5, 0.2, 0.15, 0.1, 0.05 (shuffled positions)
  const probs = [0.1, 0.5, 0.05, 0.2, 0.15];
  const logits = Float32Array.from(probs, Math.log);
  // p = 0.7: 0.5 + 0.2 reaches 0.7 → {1, 3}
  const d70 = samplingDistribution(logits, { topP: 0.7 });
  assert.ok(Math.abs(d70[1] - 0.5 / 0.7) < 1e-6 && Math.abs(d70[3] - 0.2 / 0.7) < 1e-6);
  assert.equal(d70[0] + d70[2] + d70[4], 0);
  // p = 0.71: needs the 0.15 as well → {1, 3, 4}
  const d71 = samplingDistribution(logits, { topP: 0.71 });
  assert.deepEqual([0, 1, 2, 3, 4].filter((i) => d71[i] > 0), [1, 3, 4]);
  // p = 0.5: the top token alone reaches it
  const d50 = samplingDistribution(logits, { topP: 0.5 });
  assert.deepEqual([0, 1, 2, 3, 4].filter((i) => d50[i] > 0), [1]);
  // the sampler never draws outside the nucleus
  const s = new Sampler({ topP: 0.7, seed: 5 });
  const seen = new Set(Array.from({ length: 2000 }, () => s.sample(logits)));
  assert.deepEqual([...seen].sort(), [1, 3]);
});

test("top-p over a 150K vocabulary keeps exactly the nucleus (large nucleus, no ties)", () => {
  const v = 150000;
  const logits = Float32Array.from({ length: v }, (_, i) => -i / 20000); // [V] slowly decreasing
  const p = 0.3;
  // the nucleus, in float64 from the definition: the shortest prefix (ids are already most likely first)
  const w = Array.from(logits, (x) => Math.exp(x - logits[0]));
  const total = w.reduce((a, b) => a + b, 0);
  let cum = 0;
  let size = 0;
  while (cum < p * total) cum += w[size++];
  assert.ok(size > 5000, `nucleus ${size} should be large`);
  const s = new Sampler({ topP: p, seed: 3 });
  const draws = Array.from({ length: 400 }, () => s.sample(logits));
  const maxDraw = Math.max(...draws);
  assert.ok(maxDraw < size + 2, `draw ${maxDraw} outside the nucleus of ${size}`);
  assert.ok(maxDraw > size * 0.9, `draws (max ${maxDraw}) do not reach the nucleus edge ${size}`);
});

test("empirical frequencies at temperature 1 (and 0.7) match softmax", () => {
  const logits = Float32Array.from([2.0, 1.0, 0.5, 0.0, -1.0, -3.0]);
  for (const temperature of [1, 0.7]) {
    const expected = softmax(logits, temperature);
    const n = 60000;
    const counts = new Array(logits.length).fill(0);
    const s = new Sampler({ temperature, seed: 2024 });
    for (let i = 0; i < n; i++) counts[s.sample(logits)]++;
    for (let i = 0; i < logits.length; i++) {
      const p = expected[i];
      const sd = Math.sqrt((p * (1 - p)) / n);
      assert.ok(Math.abs(counts[i] / n - p) < 5 * sd + 1e-4, `T=${temperature} token ${i}: ${counts[i] / n} vs ${p}`);
    }
  }
});

test("top-k frequencies match the renormalised softmax of the top k", () => {
  const logits = Float32Array.from([0.3, 2.0, -1.0, 1.5, 1.0, 0.0]);
  const keep = [1, 3, 4];
  const p = softmax(keep.map((i) => logits[i]));
  const n = 40000;
  const counts = new Map<number, number>();
  const s = new Sampler({ topK: 3, seed: 11 });
  for (let i = 0; i < n; i++) {
    const t = s.sample(logits);
    counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  assert.deepEqual([...counts.keys()].sort(), keep);
  keep.forEach((id, j) => {
    const sd = Math.sqrt((p[j] * (1 - p[j])) / n);
    assert.ok(Math.abs((counts.get(id) ?? 0) / n - p[j]) < 5 * sd, `token ${id}`);
  });
});

test("bad sampling options are InvalidArgumentError naming the field", () => {
  assert.throws(() => new Sampler({ temperature: -1 }), (e: unknown) => e instanceof InvalidArgumentError && e.field === "temperature");
  assert.throws(() => new Sampler({ topP: 0 }), (e: unknown) => e instanceof InvalidArgumentError && e.field === "topP");
  assert.throws(() => new Sampler({ topK: 1.5 }), (e: unknown) => e instanceof InvalidArgumentError && e.field === "topK");
  assert.throws(() => new Sampler({ seed: NaN }), (e: unknown) => e instanceof InvalidArgumentError && e.field === "seed");
});
