// Continuous batching through the public API: concurrent Engine.generate requests (8 prompts of different
// lengths, joining at different steps) decode together and each gets exactly the greedy tokens it gets alone and
// the prompt hidden states of a single-request forward; an aborted request leaves the others unchanged. On the
// bundled stories260K and on random GQA models (head size 16, and Q4_0 with head size 64).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { Engine } from "../src/engine/engine.js";
import type { GenerateResult } from "../src/engine/generate.js";
import { writeRandomModel, type RandomModelOptions } from "../src/model/gguf/writer.js";
import { maxAbsDiff, mulberry32, STORIES260K, tempDir } from "./helpers.js";

let dir: string;
before(() => {
  dir = tempDir("batch-engine");
});
after(() => rmSync(dir, { recursive: true, force: true }));

const RANDOM: { label: string; options: RandomModelOptions }[] = [
  { label: "random qwen2, GQA 8/2, head size 16", options: { architecture: "qwen2", blocks: 2, dim: 128, heads: 8, kvHeads: 2, ffnDim: 96, vocabSize: 300, dtype: "f32", seed: 31, weightStd: 0.15 } },
  { label: "random llama Q4_0, GQA 4/2, head size 64", options: { architecture: "llama", blocks: 2, dim: 256, heads: 4, kvHeads: 2, ffnDim: 128, vocabSize: 320, dtype: "q4_0", seed: 32, weightStd: 0.15 } },
];

const MAX_TOKENS = 12;
const LENGTHS = [1, 9, 33, 4, 17, 2, 26, 6];

interface Outcome {
  result: GenerateResult;
  hidden: Float32Array;
}

async function checkEngine(path: string, prefillChunk?: number): Promise<void> {
  const engine = await Engine.load(path, { cacheDir: join(dir, "graphs"), threads: 2, prefillChunk });
  try {
    assert.ok(engine.batched, "onepass's own graph batches concurrent requests");
    const rand = mulberry32(5);
    const V = engine.spec.vocabSize;
    const prompts = LENGTHS.map((n) => [engine.tokenizer.bosTokenId ?? 1, ...Array.from({ length: n - 1 }, () => 3 + Math.floor(rand() * (V - 3)))]);
    // eosTokenIds: [] keeps every request running for MAX_TOKENS steps, so they overlap for sure
    const request = (k: number, signal?: AbortSignal) => {
      const out: { hidden?: Float32Array } = {};
      const gen = engine.generate({
        prompt: prompts[k],
        maxTokens: MAX_TOKENS,
        temperature: 0,
        eosTokenIds: [],
        signal,
        onPrefill: (pass) => {
          out.hidden = pass.hidden!.data.slice();
        },
      });
      return { gen, out };
    };

    // each request alone, one after the other
    const alone: Outcome[] = [];
    for (let k = 0; k < prompts.length; k++) {
      const { gen, out } = request(k);
      alone.push({ result: await gen.result, hidden: out.hidden! });
      const single = await engine.forward(prompts[k], { hidden: true });
      const d = maxAbsDiff(out.hidden!, single.hidden!.data);
      assert.ok(d <= 1e-5, `request ${k}: onPrefill hidden states differ from a single-request forward by ${d}`);
      assert.equal(alone[k].result.tokens.length, MAX_TOKENS);
    }

    // all at once: request k starts once request 0 has streamed k tokens; request 3 is aborted after 4 tokens
    const before = engine.batchStats;
    let leaderTokens = 0;
    const progress: (() => void)[] = [];
    const waitLeader = (n: number) => new Promise<void>((resolve) => (leaderTokens >= n ? resolve() : progress.push(() => leaderTokens >= n && resolve())));
    const abort = new AbortController();
    const runs = prompts.map(async (_, k): Promise<Outcome & { streamed: number[] }> => {
      if (k > 0) await waitLeader(k);
      const { gen, out } = request(k, k === 3 ? abort.signal : undefined);
      const streamed: number[] = [];
      for await (const chunk of gen) {
        if (chunk.token !== null) streamed.push(chunk.token);
        if (k === 0) {
          leaderTokens++;
          for (const p of progress) p();
        }
        if (k === 3 && streamed.length === 4) abort.abort();
      }
      return { result: await gen.result, hidden: out.hidden!, streamed };
    });
    const together = await Promise.all(runs);
    const stats = engine.batchStats;
    const runsUsed = stats.decodeRuns - before.decodeRuns;
    const rows = stats.decodeRows - before.decodeRows;
    assert.ok(rows / runsUsed > 2, `requests shared decode runs (mean batch ${(rows / runsUsed).toFixed(2)} over ${runsUsed} runs)`);

    for (let k = 0; k < prompts.length; k++) {
      const got = together[k];
      const d = maxAbsDiff(got.hidden, alone[k].hidden);
      assert.ok(d <= 1e-5, `request ${k}: prompt hidden states in the batch differ from alone by ${d}`);
      if (k === 3) {
        assert.equal(got.result.finishReason, "abort");
        assert.ok(got.result.tokens.length >= 4 && got.result.tokens.length < MAX_TOKENS, `aborted after ${got.result.tokens.length} tokens`);
        assert.deepEqual(got.result.tokens, alone[k].result.tokens.slice(0, got.result.tokens.length), "the aborted request's tokens so far are its own");
        continue;
      }
      assert.deepEqual(got.result.tokens, alone[k].result.tokens, `request ${k} (prompt of ${prompts[k].length}) decodes the same tokens together as alone`);
      assert.deepEqual(got.streamed, alone[k].result.tokens);
      assert.equal(got.result.text, alone[k].result.text);
      assert.equal(got.result.finishReason, "length");
    }

    // a consumer that stops iterating early leaves; the others are unaffected
    const a = request(1);
    const b = request(2);
    const first = (async () => {
      for await (const _ of a.gen) break;
      return a.gen.result;
    })();
    const [ra, rb] = await Promise.all([first, b.gen.result]);
    assert.equal(ra.finishReason, "abort");
    assert.deepEqual(rb.tokens, alone[2].result.tokens);
  } finally {
    await engine.dispose();
  }
}

test("concurrent generations decode together and each equals its own decode alone: stories260K", () => checkEngine(STORIES260K));
// prompts prefilled in pieces of 8 tokens, with decode steps of the running requests between the pieces
test("prompts prefilled piecewise between decode steps give the same tokens and hidden states: stories260K", () => checkEngine(STORIES260K, 8));
for (const c of RANDOM) {
  test(`concurrent generations decode together and each equals its own decode alone: ${c.label}`, async () => {
    const path = join(dir, `${c.options.architecture}-${c.options.seed}.gguf`);
    writeRandomModel(path, c.options);
    await checkEngine(path);
  });
}

test("maxBatch / maxSequences are checked", async () => {
  await assert.rejects(() => Engine.load(STORIES260K, { cacheDir: join(dir, "graphs"), threads: 1, maxBatch: 0 }), /maxBatch must be a positive integer/);
});
