// Engine + generate on the bundled stories260K checkpoint: llama2.c's published greedy sample, the prefill
// hook's hidden states from the real decoder, streaming, stop strings and the request queue.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { Engine } from "../src/engine/engine.js";
import type { ForwardPass } from "../src/engine/types.js";
import { ContextOverflowError, InvalidArgumentError } from "../src/errors.js";
import { maxAbsDiff, tempDir } from "./helpers.js";

// karpathy/llama2.c README: stories260K, greedy (temperature 0) from BOS
const LLAMA2C_SAMPLE =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily\'s mom said, "Lily, let\'s go to the park." Lily was sad and didn\'t know what to do. She said, "I want to play with your ball, but I can\'t find it."\nLily was sad and didn\'t know what to do. She said, "I\'m sorry, Lily. I didn\'t know what to do."\nLily didn\'t want to help her mom, so she';

let engine: Engine;
let cacheDir: string;

before(async () => {
  cacheDir = tempDir("engine-test");
  engine = await Engine.load(undefined, { cacheDir, threads: 1 });
});
after(async () => {
  await engine?.dispose();
  rmSync(cacheDir, { recursive: true, force: true });
});

// llama2.c `-n 200` samples at positions 0..199: 200 tokens after BOS (199 stop one word short, at "so").
test("greedy from BOS for 200 tokens reproduces llama2.c's stories260K sample exactly", async () => {
  const bos = engine.tokenizer.bosTokenId;
  assert.equal(bos, 1);
  const g = engine.generate({ prompt: [1], maxTokens: 200, temperature: 0 });
  let streamed = "";
  for await (const chunk of g) streamed += chunk.text;
  const r = await g.result;
  assert.equal(r.text, LLAMA2C_SAMPLE);
  assert.equal(streamed, LLAMA2C_SAMPLE);
  assert.equal(r.tokens.length, 200);
  assert.equal(r.finishReason, "length");
  assert.equal(engine.tokenizer.decode(r.tokens), LLAMA2C_SAMPLE);
  // the empty text prompt is [BOS] as well
  const fromEmptyText = await engine.generate({ prompt: "", maxTokens: 30, temperature: 0 }).result;
  assert.deepEqual(fromEmptyText.tokens, r.tokens.slice(0, 30));
  assert.ok(r.timings.prefillMs > 0 && r.timings.decodeTokensPerS > 0);
  assert.deepEqual(r.usage, { promptTokens: 1, completionTokens: 200 });
});

test("a text prompt continues with a leading space where the text needs one", async () => {
  const prompt = "Once upon a time, there was a little girl named";
  const r = await engine.generate({ prompt, maxTokens: 5, temperature: 0 }).result;
  assert.ok(LLAMA2C_SAMPLE.startsWith(prompt + r.text), JSON.stringify(r.text));
  assert.equal(r.text, " Lily. She loved");
});

test("onPrefill sees the real prompt's hidden states [L+1, T, d] = the forward() pass, before decoding", async () => {
  const prompt = "Lily saw a big dog";
  const tokens = engine.tokenizer.encode(prompt);
  let seen: ForwardPass | undefined;
  let chunksBeforeHook = -1;
  let chunks = 0;
  const g = engine.generate({
    prompt,
    maxTokens: 8,
    temperature: 0,
    onPrefill: async (pass) => {
      chunksBeforeHook = chunks;
      seen = pass;
    },
  });
  for await (const _ of g) chunks++;
  assert.equal(chunksBeforeHook, 0);
  assert.ok(seen?.hidden, "no hidden states");
  const { blocks, dim } = engine.spec;
  assert.deepEqual([seen.hidden.layers, seen.hidden.tokens, seen.hidden.dim], [blocks + 1, tokens.length, dim]);
  // the same prompt through forward(): identical states and last-token logits
  const f = await engine.forward(prompt, { hidden: true });
  assert.ok(f.hidden);
  const maxDiff = maxAbsDiff(f.hidden.data, seen.hidden.data);
  assert.ok(maxDiff < 1e-5, `hidden states differ by ${maxDiff}`);
  assert.deepEqual(Array.from(f.logits), Array.from(seen.logits));

  const blocked = engine.generate({ prompt, maxTokens: 8, temperature: 0, onPrefill: () => ({ stop: true }) });
  const got: string[] = [];
  for await (const c of blocked) got.push(c.text);
  assert.deepEqual(got, []);
  assert.equal((await blocked.result).finishReason, "stop");
});

test("stop strings on real text; seeded sampling is reproducible", async () => {
  const r = await engine.generate({ prompt: [1], maxTokens: 60, temperature: 0, stop: ["Lily."] }).result;
  assert.equal(r.text, "Once upon a time, there was a little girl named ");
  assert.equal(r.finishReason, "stop");
  const a = await engine.generate({ prompt: "Once", maxTokens: 40, temperature: 1, topP: 0.9, seed: 7 }).result;
  const b = await engine.generate({ prompt: "Once", maxTokens: 40, temperature: 1, topP: 0.9, seed: 7 }).result;
  assert.deepEqual(a.tokens, b.tokens);
});

test("requests queue: two concurrent generations give the same text as one at a time", async () => {
  const one = engine.generate({ prompt: "The cat", maxTokens: 30, temperature: 0 });
  const two = engine.generate({ prompt: [1], maxTokens: 30, temperature: 0 });
  const [r1, r2] = await Promise.all([one.result, two.result]);
  assert.equal(r2.text, LLAMA2C_SAMPLE.slice(0, r2.text.length));
  const again = await engine.generate({ prompt: "The cat", maxTokens: 30, temperature: 0 }).result;
  assert.equal(r1.text, again.text);
});

test("chat template (fallback ChatML) and typed errors", async () => {
  const text = engine.applyChatTemplate([{ role: "user", content: "hi" }]);
  assert.equal(text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  const r = await engine.generate({ prompt: "hi", chat: true, system: "be kind", maxTokens: 5, temperature: 0 }).result;
  assert.equal(r.usage.promptTokens, engine.promptTokens({ messages: [{ role: "system", content: "be kind" }, { role: "user", content: "hi" }] }).length);
  assert.throws(() => engine.generate({ prompt: [1], maxTokens: engine.contextLength }), (e: unknown) => e instanceof ContextOverflowError && e.field === "context_length");
  assert.throws(() => engine.generate({ prompt: "x", system: "y" }), InvalidArgumentError);
  assert.throws(() => engine.generate({ maxTokens: 3 }), InvalidArgumentError);
  await assert.rejects(engine.forward(Array(engine.contextLength + 1).fill(1)), ContextOverflowError);
});
