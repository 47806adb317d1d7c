import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, appendFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FeatureCacheError } from "../src/errors.js";
import { estimateFeatureBytes, extractFeatures, openFeatureCache, summarize, textHash } from "../src/data/features.js";
import { decodeF16, encodeF16 } from "../src/numeric/half.js";
import type { HiddenStates } from "../src/types/hidden.js";
import { FAKE_DIM, FAKE_LAYERS, fakeExamples, fakeHidden, fakeSource, fakeTokens } from "./features-fake.js";
import { indexLinesSoFar, runNodeScript, tempDir, type ChildRun } from "./helpers.js";

const LABELS = ["a", "b", "c"];
const tmp = () => tempDir("features");

/** Exact fp16 image of a tensor: what the cache must give back. */
function viaF16(h: HiddenStates): Float32Array {
  return decodeF16(encodeF16(h.data));
}

function assertSameAsSource(actual: HiddenStates, expected: HiddenStates, what: string): void {
  assert.deepEqual([actual.layers, actual.tokens, actual.dim], [expected.layers, expected.tokens, expected.dim], what);
  const want = viaF16(expected);
  for (let k = 0; k < want.length; k++) {
    if (actual.data[k] !== want[k]) assert.fail(`${what}: value ${k} is ${actual.data[k]}, fp16 of source is ${want[k]}`);
    // And within fp16 precision of the fp32 source.
    const x = expected.data[k];
    assert.ok(Math.abs(actual.data[k] - x) <= Math.max(Math.abs(x) * 2 ** -11, 2 ** -25), `${what}: value ${k}`);
  }
}

test("extract (full) → reader returns the source's hidden states, labels, token counts, in order", async () => {
  const dir = tmp();
  try {
    const examples = fakeExamples(37);
    const progress: number[] = [];
    const res = await extractFeatures({
      source: fakeSource(),
      examples,
      labelNames: LABELS,
      dataset: { name: "fake", split: "train" },
      outDir: dir,
      shardSize: 8,
      onProgress: (p) => progress.push(p.done),
    });
    assert.equal(res.count, 37);
    assert.equal(res.computed, 37);
    assert.equal(progress.at(-1), 37);
    const files = readdirSync(dir).sort();
    assert.deepEqual(files.filter((f) => f.endsWith(".f16")), ["shard-00000.f16", "shard-00001.f16", "shard-00002.f16", "shard-00003.f16", "shard-00004.f16"]);
    assert.ok(!files.some((f) => f.endsWith(".part") || f.endsWith(".tmp") || f === "lock"), files.join(" "));
    const whole = openFeatureCache(dir); // every shard fits the default budget: kept whole in memory
    for (let i = 0; i < 37; i++) assertSameAsSource(whole.get(i), fakeHidden(examples[i].text), `example ${i} (whole shards)`);
    whole.close();
    const cache = openFeatureCache(dir, { cacheBytes: 1000 }); // the data exceeds this budget: read per example
    assert.equal(cache.size, 37);
    assert.deepEqual(cache.labelNames, LABELS);
    assert.deepEqual([...cache.labels], examples.map((e) => e.label));
    assert.equal(cache.manifest.model.layers, FAKE_LAYERS);
    assert.equal(cache.manifest.tokenization.maxTokens, null);
    assert.equal(cache.manifest.complete, true);
    for (let i = 36; i >= 0; i--) {
      assert.equal(cache.tokens(i), fakeTokens(examples[i].text));
      assertSameAsSource(cache.get(i), fakeHidden(examples[i].text), `example ${i}`);
    }
    const order = [5, 3, 30, 1, 0];
    const batches = [...cache.batches(2, order)];
    assert.deepEqual(batches.map((b) => b.indices), [[5, 3], [30, 1], [0]]);
    assert.deepEqual([...batches[1].labels], [examples[30].label, examples[1].label]);
    assertSameAsSource(batches[1].hidden[0], fakeHidden(examples[30].text), "batch");
    // Total bytes = Σ T_i (L+1) d · 2.
    const bytes = examples.reduce((s, e) => s + fakeTokens(e.text) * FAKE_LAYERS * FAKE_DIM * 2, 0);
    assert.equal(res.bytes, bytes);
    const onDisk = readdirSync(dir).filter((f) => f.endsWith(".f16")).reduce((s, f) => s + statSync(join(dir, f)).size, 0);
    assert.equal(onDisk, bytes);
    const est = estimateFeatureBytes({ source: fakeSource(), examples });
    assert.ok(est.measured);
    assert.equal(est.bytes, bytes); // sample covers every example here, so the estimate is exact
    cache.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("summary mode stores per-layer mean and max [L+1, 2, d]; maxTokens keeps the first tokens", async () => {
  const dir = tmp();
  try {
    const examples = fakeExamples(10);
    await extractFeatures({ source: fakeSource(), examples, labelNames: LABELS, outDir: dir, mode: "summary", maxTokens: 4 });
    const cache = openFeatureCache(dir);
    assert.equal(cache.manifest.mode, "summary");
    assert.equal(cache.manifest.tokenization.maxTokens, 4);
    for (let i = 0; i < 10; i++) {
      const full = fakeHidden(examples[i].text);
      const T = Math.min(4, full.tokens);
      assert.equal(cache.tokens(i), T);
      const got = cache.get(i);
      assert.deepEqual([got.layers, got.tokens, got.dim], [FAKE_LAYERS, 2, FAKE_DIM]);
      // Independent mean/max straight from the source tensor's first T tokens.
      for (let l = 0; l < FAKE_LAYERS; l++) {
        for (let j = 0; j < FAKE_DIM; j++) {
          let sum = 0;
          let max = -Infinity;
          for (let t = 0; t < T; t++) {
            const v = full.data[(l * full.tokens + t) * FAKE_DIM + j];
            sum += v;
            max = Math.max(max, v);
          }
          const mean = sum / T;
          assert.ok(Math.abs(got.token(l, 0)[j] - mean) <= Math.abs(mean) * 2 ** -10 + 2 ** -24, `mean ${i} ${l} ${j}`);
          assert.ok(Math.abs(got.token(l, 1)[j] - max) <= Math.abs(max) * 2 ** -11 + 2 ** -25, `max ${i} ${l} ${j}`);
        }
      }
    }
    assert.equal(summarize(fakeHidden("abc")).tokens, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a cache made by another model or settings is refused; a complete cache is a no-op rerun", async () => {
  const dir = tmp();
  try {
    const examples = fakeExamples(12);
    const base = { examples, labelNames: LABELS, outDir: dir, shardSize: 5 };
    await extractFeatures({ ...base, source: fakeSource() });
    const again = await extractFeatures({ ...base, source: fakeSource() });
    assert.equal(again.computed, 0);
    assert.equal(again.resumedFrom, 12);
    const refused = async (opts: Partial<Parameters<typeof extractFeatures>[0]>, field: string) => {
      await assert.rejects(extractFeatures({ ...base, source: fakeSource(), ...opts }), (e: unknown) => {
        assert.ok(e instanceof FeatureCacheError, String(e));
        assert.equal(e.field, field);
        assert.ok(e.message.includes("manifest.json"), e.message);
        return true;
      });
    };
    await refused({ source: fakeSource({ fingerprint: "other-model" }) }, "model.fingerprint");
    await refused({ source: fakeSource({ dim: 4 }) }, "model.dim");
    await refused({ maxTokens: 3 }, "tokenization.maxTokens");
    await refused({ mode: "summary" }, "mode");
    await refused({ examples: examples.slice(0, 11) }, "dataset.count");
    await refused({ examples: examples.map((e, i) => (i === 7 ? { ...e, text: e.text + "!" } : e)) }, "dataset.hash");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("corrupt or incomplete caches give FeatureCacheError naming the file", async () => {
  const dir = tmp();
  try {
    const examples = fakeExamples(12);
    await extractFeatures({ source: fakeSource(), examples, labelNames: LABELS, outDir: dir, shardSize: 5 });
    // Truncated shard data.
    const data = join(dir, "shard-00001.f16");
    const bytes = readFileSync(data);
    writeFileSync(data, bytes.subarray(0, bytes.length - 2));
    assert.throws(() => openFeatureCache(dir), (e: unknown) => e instanceof FeatureCacheError && e.message.includes("shard-0000") && e.file !== undefined);
    writeFileSync(data, bytes);
    // Garbage index line.
    const index = join(dir, "shard-00002.idx.jsonl");
    const saved = readFileSync(index, "utf8");
    appendFileSync(index, "{not json\n");
    assert.throws(() => openFeatureCache(dir), (e: unknown) => e instanceof FeatureCacheError && e.file === index && /line 3/.test(e.message));
    writeFileSync(index, saved);
    // Manifest with a bad field.
    const mpath = join(dir, "manifest.json");
    const m = JSON.parse(readFileSync(mpath, "utf8"));
    writeFileSync(mpath, JSON.stringify({ ...m, model: { ...m.model, dim: "eight" } }));
    assert.throws(() => openFeatureCache(dir), (e: unknown) => e instanceof FeatureCacheError && e.field === "model.dim" && e.file === mpath);
    writeFileSync(mpath, JSON.stringify({ ...m, complete: false }));
    assert.throws(() => openFeatureCache(dir), (e: unknown) => e instanceof FeatureCacheError && /incomplete/.test(e.message));
    assert.throws(() => openFeatureCache(join(dir, "nope")), FeatureCacheError);
    // Wrong-size source output is refused, not stored.
    const other = tmp();
    const bad = { ...fakeSource(), layers: FAKE_LAYERS + 1 };
    await assert.rejects(extractFeatures({ source: bad, examples, labelNames: LABELS, outDir: other }), FeatureCacheError);
    rmSync(other, { recursive: true, force: true });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const CHILD = join(fileURLToPath(new URL(".", import.meta.url)), "features-child.js");

/** Run the child, SIGKILL it once it has stored `killAt` examples; rejects when it fails without being killed. */
async function runChild(dir: string, n: number, delayMs: number, killAt?: number): Promise<ChildRun> {
  const r = await runNodeScript(CHILD, [dir, String(n), String(delayMs)], killAt === undefined ? undefined : { dir, n: killAt });
  if (!r.killed && r.code !== 0) throw new Error(`child failed (${r.code}): ${r.stderr}`);
  return r;
}

test("RESUME: kill -9 mid-run (three times), rerun: every example exactly once, in order, correct values, no temp files", async () => {
  const dir = tmp();
  const out = join(dir, "cache");
  try {
    const N = 240;
    for (const killAt of [40, 100, 171]) {
      const before = indexLinesSoFar(out);
      const r = await runChild(out, N, 2, killAt);
      assert.ok(r.killed, "the child finished before it could be killed: make it slower");
      assert.ok(indexLinesSoFar(out) >= killAt && indexLinesSoFar(out) > before);
      assert.throws(() => openFeatureCache(out), FeatureCacheError); // incomplete until resumed
    }
    const final = await runChild(out, N, 0);
    const result = JSON.parse(final.stdout);
    assert.ok(result.resumedFrom >= 171 && result.resumedFrom < N, `resumed from ${result.resumedFrom}`);
    assert.equal(result.resumedFrom + result.computed, N);
    const files = readdirSync(out);
    assert.ok(!files.some((f) => f.endsWith(".part") || f.endsWith(".tmp") || f === "lock"), files.join(" "));
    const cache = openFeatureCache(out);
    const examples = fakeExamples(N);
    assert.equal(cache.size, N);
    // Index: every example once, in order, offsets back to back (openFeatureCache checks that) and the
    // text hash of the right example.
    const lines = files.filter((f) => f.endsWith(".idx.jsonl")).sort().flatMap((f) => readFileSync(join(out, f), "utf8").trim().split("\n").map((l) => JSON.parse(l)));
    assert.deepEqual(lines.map((e) => e.i), examples.map((_, i) => i));
    assert.deepEqual(lines.map((e) => e.h), examples.map((e) => textHash(e.text)));
    for (let i = 0; i < N; i++) {
      assert.equal(cache.labels[i], examples[i].label);
      assertSameAsSource(cache.get(i), fakeHidden(examples[i].text), `example ${i}`);
    }
    // A run with another model into the killed-and-finished cache is refused.
    await assert.rejects(
      extractFeatures({ source: fakeSource({ fingerprint: "another" }), examples, labelNames: LABELS, outDir: out, shardSize: 16 }),
      FeatureCacheError,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("resume after a torn journal line and a shard finalised without its index", async () => {
  const dir = tmp();
  try {
    const examples = fakeExamples(20);
    const base = { source: fakeSource(), examples, labelNames: LABELS, outDir: dir, shardSize: 8 };
    const stop = new AbortController();
    await extractFeatures({ ...base, onProgress: (p) => p.done === 13 && stop.abort(), signal: stop.signal });
    // Simulate a crash mid-append: half an index line and stray data bytes after example 12.
    appendFileSync(join(dir, "shard-00001.idx.jsonl.part"), '{"i":13,"off":');
    appendFileSync(join(dir, "shard-00001.f16.part"), Buffer.alloc(100, 7));
    writeFileSync(join(dir, "manifest.json.123.tmp"), "junk");
    const r = await extractFeatures(base);
    assert.equal(r.resumedFrom, 13);
    assert.equal(r.computed, 7);
    const cache = openFeatureCache(dir);
    for (let i = 0; i < 20; i++) assertSameAsSource(cache.get(i), fakeHidden(examples[i].text), `example ${i}`);
    assert.ok(!readdirSync(dir).some((f) => f.endsWith(".tmp") || f.endsWith(".part")));

    // Crash between the two finalising renames of the last shard (data renamed, index still .part).
    const dir2 = tmp();
    const stop2 = new AbortController();
    await extractFeatures({ ...base, outDir: dir2, onProgress: (p) => p.done === 15 && stop2.abort(), signal: stop2.signal });
    // Finish example 15 by hand as the writer would have, then "crash" after renaming only the data file.
    const { renameSync } = await import("node:fs");
    const h = fakeHidden(examples[15].text);
    const enc = encodeF16(h.data);
    const part = join(dir2, "shard-00001.f16.part");
    const off = statSync(part).size;
    appendFileSync(part, Buffer.from(enc.buffer, enc.byteOffset, enc.byteLength));
    appendFileSync(join(dir2, "shard-00001.idx.jsonl.part"), JSON.stringify({ i: 15, off, t: h.tokens, y: examples[15].label, h: textHash(examples[15].text) }) + "\n");
    renameSync(part, join(dir2, "shard-00001.f16"));
    const r2 = await extractFeatures({ ...base, outDir: dir2 });
    assert.equal(r2.resumedFrom, 16);
    const c2 = openFeatureCache(dir2);
    for (let i = 0; i < 20; i++) assertSameAsSource(c2.get(i), fakeHidden(examples[i].text), `example ${i}`);
    rmSync(dir2, { recursive: true, force: true });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
