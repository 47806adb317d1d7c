// The ORT decoder session on the bundled stories260K checkpoint, against the TypeScript reference pass,
// llama2.c's published greedy sample, and itself (KV cache vs recomputation, chunked prefill).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { loadModel } from "../src/model/load.js";
import { createDecoderSession } from "../src/engine/session.js";
import { referenceForward } from "../src/reference/forward.js";
import { ContextOverflowError, InvalidArgumentError } from "../src/errors.js";
import type { LoadedModel } from "../src/model/spec.js";
import type { DecoderSession } from "../src/engine/types.js";
import { readGgufHeader } from "../src/model/gguf/index.js";
import { STORIES260K, argmax, maxAbsDiff, tempDir } from "./helpers.js";

const MODEL = STORIES260K;
// llama2.c (karpathy/llama2.c README, stories260K) greedy sample from BOS
const LLAMA2C_SAMPLE =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily\'s mom said, "Lily, let\'s go to the park." Lily was sad and didn\'t know what to do. She said, "I want to play with your ball, but I can\'t find it."\nLily was sad and didn\'t know what to do. She said, "I\'m sorry, Lily. I didn\'t know what to do."\nLily didn\'t want to help her mom, so she';
const PROMPT = [1, 403, 407, 261, 378, 29, 395, 372, 260, 488, 275, 26, 286, 300, 322, 20, 40, 50, 60, 70]; // 20 tokens

let model: LoadedModel;
let cacheDir: string;
let session: DecoderSession;

before(async () => {
  model = await loadModel(MODEL);
  cacheDir = tempDir("session-test");
  session = await createDecoderSession(model, { cacheDir, threads: 2 });
});
after(async () => {
  await session?.dispose();
  model?.weights.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

test("ORT graph matches the reference forward pass on logits and every hidden layer (stories260K)", async () => {
  session.reset();
  const ref = referenceForward(model.spec, model.weights, PROMPT);
  const run = await session.forward(PROMPT, { hidden: true, logits: "all" });
  assert.equal(run.positions, PROMPT.length);
  assert.ok(maxAbsDiff(run.logits, ref.logits) < 1e-4, `logits differ by ${maxAbsDiff(run.logits, ref.logits)}`);
  const h = run.hidden!;
  assert.deepEqual([h.layers, h.tokens, h.dim], [model.spec.blocks + 1, PROMPT.length, model.spec.dim]);
  for (let l = 0; l < h.layers; l++) {
    const diff = maxAbsDiff(h.layer(l), ref.hidden.layer(l));
    assert.ok(diff < 1e-4, `hidden layer ${l} differs by ${diff}`);
  }
  // default logits: only the last row, equal to the last row of "all"
  session.reset();
  const last = await session.forward(PROMPT);
  assert.equal(last.positions, 1);
  assert.ok(maxAbsDiff(last.logits, ref.logits.subarray((PROMPT.length - 1) * model.spec.vocabSize)) < 1e-4);
  assert.equal(last.hidden, undefined);
});

test("greedy decoding from BOS reproduces llama2.c's published stories260K sample", async () => {
  const header = await readGgufHeader(MODEL);
  const pieces = header.metadata.get("tokenizer.ggml.tokens")?.value as string[];
  assert.ok(Array.isArray(pieces) && pieces.length === model.spec.vocabSize);
  session.reset();
  const generated: number[] = [];
  let run = await session.forward([1]);
  // llama2.c `-n 200`: positions 0..199, each sampling the next token (200 tokens after BOS)
  for (let step = 0; step < 200; step++) {
    const next = argmax(run.logits);
    generated.push(next);
    if (step < 199) run = await session.forward([next]);
  }
  const bytes: number[] = [];
  for (const id of generated) {
    const p = pieces[id];
    const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(p);
    if (byte) bytes.push(parseInt(byte[1], 16));
    else bytes.push(...Buffer.from(p.replaceAll("\u2581", " "), "utf8"));
  }
  const text = Buffer.from(bytes).toString("utf8").replace(/^ /, ""); // SentencePiece drops the leading space
  assert.equal(text, LLAMA2C_SAMPLE);
});

test("KV-cache decoding gives the same tokens and logits as recomputing the whole sequence", async () => {
  const seq = [1, 403, 407];
  session.reset();
  let run = await session.forward(seq);
  const cached: number[] = [];
  for (let i = 0; i < 12; i++) {
    const recompute = await createFreshRun([...seq, ...cached]);
    assert.ok(maxAbsDiff(run.logits, recompute) < 1e-4, `step ${i}: cached vs recomputed logits differ`);
    const next = argmax(run.logits);
    assert.equal(next, argmax(recompute));
    cached.push(next);
    run = await session.forward([next]);
  }
  assert.equal(session.pastLength, seq.length + cached.length);
});

/** Last-row logits of a fresh prefill over `tokens` (no cache reuse). */
async function createFreshRun(tokens: number[]): Promise<Float32Array> {
  const s = await createDecoderSession(model, { cacheDir, threads: 1, taps: false });
  try {
    return (await s.forward(tokens)).logits;
  } finally {
    await s.dispose();
  }
}

test("hidden states of one prefill equal those of the same tokens run in two chunks", async () => {
  session.reset();
  const whole = (await session.forward(PROMPT, { hidden: true, logits: "all" })).hidden!;
  session.reset();
  const a = await session.forward(PROMPT.slice(0, 7), { hidden: true, logits: "all" });
  const b = await session.forward(PROMPT.slice(7), { hidden: true, logits: "all" });
  assert.equal(session.pastLength, PROMPT.length);
  for (let l = 0; l < whole.layers; l++) {
    assert.ok(maxAbsDiff(a.hidden!.layer(l), whole.sliceTokens(0, 7).layer(l)) < 1e-4, `layer ${l}, chunk 1`);
    assert.ok(maxAbsDiff(b.hidden!.layer(l), whole.sliceTokens(7, PROMPT.length).layer(l)) < 1e-4, `layer ${l}, chunk 2`);
  }
  // truncate back to the first chunk and replay the second: same states again
  session.truncate(7);
  const again = await session.forward(PROMPT.slice(7), { hidden: true });
  assert.ok(maxAbsDiff(again.hidden!.data, b.hidden!.data) < 1e-5);
});

test("a prompt past the context window throws ContextOverflowError naming context_length", async () => {
  session.reset();
  await session.forward([1, 2, 3]);
  const tooMany = new Array(model.spec.contextLength - 2).fill(5);
  await assert.rejects(session.forward(tooMany), (e: unknown) => {
    assert.ok(e instanceof ContextOverflowError);
    assert.equal(e.field, "context_length");
    return true;
  });
  assert.equal(session.pastLength, 3, "a rejected run leaves the cache untouched");
});

test("bad calls fail with typed errors naming the field", async () => {
  session.reset();
  await assert.rejects(session.forward([1, model.spec.vocabSize]), (e: unknown) => {
    assert.ok(e instanceof InvalidArgumentError);
    assert.equal(e.field, "tokens");
    assert.equal(e.offset, 1);
    return true;
  });
  await assert.rejects(session.forward([]), InvalidArgumentError);
  // a second forward while one is in flight would corrupt the KV cache: rejected, the first completes
  session.reset();
  const first = session.forward([1, 403]);
  await assert.rejects(session.forward([407]), InvalidArgumentError);
  await first;
  assert.equal(session.pastLength, 2);
  assert.throws(() => session.truncate(5), InvalidArgumentError);
  const noTaps = await createDecoderSession(model, { cacheDir, threads: 1, taps: false });
  try {
    assert.equal(noTaps.hasTaps, false);
    await assert.rejects(noTaps.forward([1], { hidden: true }), (e: unknown) => e instanceof InvalidArgumentError && e.field === "taps");
  } finally {
    await noTaps.dispose();
  }
});

test("a forward longer than maxChunk runs in chunks with the same logits and hidden states", async () => {
  session.reset();
  const whole = await session.forward(PROMPT, { hidden: true, logits: "all" });
  const chunked = await createDecoderSession(model, { cacheDir, threads: 1, maxChunk: 6 }); // 20 tokens → 6+6+6+2
  try {
    const r = await chunked.forward(PROMPT, { hidden: true, logits: "all" });
    assert.equal(r.positions, PROMPT.length);
    assert.equal(chunked.pastLength, PROMPT.length);
    assert.ok(maxAbsDiff(r.logits, whole.logits) < 1e-4);
    assert.ok(maxAbsDiff(r.hidden!.data, whole.hidden!.data) < 1e-4);
    chunked.reset();
    const lastOnly = await chunked.forward(PROMPT);
    assert.equal(lastOnly.positions, 1);
    assert.ok(maxAbsDiff(lastOnly.logits, whole.logits.subarray((PROMPT.length - 1) * model.spec.vocabSize)) < 1e-4);
  } finally {
    await chunked.dispose();
  }
});
