// The on-disk graph cache: a second load hits, a corrupted entry (model, data or manifest) is rebuilt and the
// rebuilt graph computes the same logits.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { loadModel } from "../src/model/load.js";
import { ensureDecoderGraph, graphCacheKey } from "../src/graph/cache.js";
import { createDecoderSession } from "../src/engine/session.js";
import type { LoadedModel } from "../src/model/spec.js";
import { STORIES260K, tempDir } from "./helpers.js";

let model: LoadedModel;
let cacheDir: string;
before(async () => {
  model = await loadModel(STORIES260K);
  cacheDir = tempDir("graph-cache");
});
after(() => {
  model.weights.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

async function lastLogits(): Promise<Float32Array> {
  const s = await createDecoderSession(model, { cacheDir, threads: 1, taps: false });
  try {
    return (await s.forward([1, 403, 407, 261])).logits;
  } finally {
    await s.dispose();
  }
}

test("the graph cache misses once, then hits; keys differ by build options", () => {
  const first = ensureDecoderGraph(model, { taps: false }, { cacheDir });
  assert.equal(first.hit, false);
  const second = ensureDecoderGraph(model, { taps: false }, { cacheDir });
  assert.equal(second.hit, true);
  assert.equal(second.modelPath, first.modelPath);
  assert.notEqual(graphCacheKey(model, { taps: false }), graphCacheKey(model, { taps: true }));
  assert.notEqual(graphCacheKey(model, { taps: true }), graphCacheKey({ ...model, fingerprint: model.fingerprint + "x" }, { taps: true }));
  // no temporary folders left behind
  assert.deepEqual(readdirSync(cacheDir).filter((n) => n.includes(".tmp-")), []);
});

test("corrupted cache entries are rebuilt, not fatal, and compute the same logits", async () => {
  const reference = await lastLogits();
  const entry = ensureDecoderGraph(model, { taps: false }, { cacheDir });
  assert.equal(entry.hit, true);

  // 1. model.onnx overwritten with garbage
  writeFileSync(entry.modelPath, Buffer.from("not an onnx model"));
  assert.deepEqual(await lastLogits(), reference);
  assert.equal(ensureDecoderGraph(model, { taps: false }, { cacheDir }).hit, true, "rebuilt entry is valid again");

  // 2. weights flipped in place (same size)
  const data = readFileSync(entry.modelPath + ".data");
  for (let i = 0; i < data.length; i += 97) data[i] ^= 0xff;
  writeFileSync(entry.modelPath + ".data", data);
  assert.equal(ensureDecoderGraph(model, { taps: false }, { cacheDir }).hit, false);
  assert.deepEqual(await lastLogits(), reference);

  // 3. manifest truncated
  const manifest = join(entry.dir, "manifest.json");
  writeFileSync(manifest, readFileSync(manifest).subarray(0, 10));
  assert.deepEqual(await lastLogits(), reference);
  assert.equal(ensureDecoderGraph(model, { taps: false }, { cacheDir }).hit, true);
});
