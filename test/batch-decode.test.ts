// Continuous batching at the session level: several sequences decode in one ORT run (BatchDecoder.decodeStep),
// joining at different steps, and each gets exactly the greedy tokens and logits it gets decoded alone, on the
// bundled stories260K (head size 8: GroupQueryAttention with a separate RotaryEmbedding) and random models of each
// attention path: GQA with head size 16 / 32 / 64 (fused rotary), and head size 4 (plain-op attention + mask).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { loadModel } from "../src/model/load.js";
import { writeRandomModel, type RandomModelOptions } from "../src/model/gguf/writer.js";
import { createDecoderSession } from "../src/engine/session.js";
import type { DecoderSession, SequenceHandle } from "../src/engine/types.js";
import { argmax, maxAbsDiff, mulberry32, STORIES260K, tempDir } from "./helpers.js";

let dir: string;
before(() => {
  dir = tempDir("batch-decode");
});
after(() => rmSync(dir, { recursive: true, force: true }));

const RANDOM: { label: string; options: RandomModelOptions }[] = [
  { label: "qwen2 GQA 8/2, head size 16", options: { architecture: "qwen2", blocks: 2, dim: 128, heads: 8, kvHeads: 2, ffnDim: 96, vocabSize: 300, dtype: "f32", seed: 21, weightStd: 0.15 } },
  { label: "qwen3 GQA 4/2, head size 32, q/k norm", options: { architecture: "qwen3", blocks: 2, dim: 64, heads: 4, kvHeads: 2, headDim: 32, ffnDim: 96, vocabSize: 300, dtype: "f32", seed: 22, weightStd: 0.15 } },
  { label: "llama Q4_0 GQA 4/2, head size 64", options: { architecture: "llama", blocks: 2, dim: 256, heads: 4, kvHeads: 2, ffnDim: 128, vocabSize: 320, dtype: "q4_0", seed: 23, weightStd: 0.15 } },
  { label: "llama GQA 4/2, head size 4 (plain-op attention)", options: { architecture: "llama", blocks: 2, dim: 16, heads: 4, kvHeads: 2, ffnDim: 40, vocabSize: 300, dtype: "f32", seed: 24, weightStd: 0.3 } },
];

const STEPS = 10;

/** Greedy decode of `prompt` alone on the session's own sequence: tokens, per-step logits, prompt hidden states. */
async function alone(session: DecoderSession, prompt: number[]) {
  session.reset();
  let pass = await session.forward(prompt, { hidden: true });
  const hidden = pass.hidden!.data.slice();
  const tokens: number[] = [];
  const logits: Float32Array[] = [];
  for (let s = 0; s < STEPS; s++) {
    logits.push(pass.logits.slice());
    tokens.push(argmax(pass.logits));
    pass = await session.forward([tokens[tokens.length - 1]]);
  }
  return { tokens, logits, hidden };
}

async function checkModel(path: string): Promise<void> {
  const model = await loadModel(path);
  const session = await createDecoderSession(model, { cacheDir: join(dir, "graphs"), threads: 2 });
  try {
    const batch = session.batch;
    assert.ok(batch !== undefined, "onepass's own graph decodes in batches");
    const rand = mulberry32(7);
    const V = model.spec.vocabSize;
    // 8 prompts of different lengths (1 .. 40 tokens); sequence k joins at step k
    const prompts = Array.from({ length: 8 }, (_, k) => Array.from({ length: [1, 7, 40, 3, 18, 2, 25, 11][k] }, () => 1 + Math.floor(rand() * (V - 1))));
    const ref = [];
    for (const p of prompts) ref.push(await alone(session, p));

    const seqs: SequenceHandle[] = [];
    const got = prompts.map(() => ({ tokens: [] as number[], logits: [] as Float32Array[] }));
    const next: number[] = [];
    for (let step = 0; got.some((g) => g.tokens.length < STEPS); step++) {
      if (step < prompts.length) {
        // a new sequence joins: its prefill runs between two decode steps of the others
        const seq = batch.openSequence();
        const pass = await batch.forwardSequence(seq, prompts[step], { hidden: true });
        const dh = maxAbsDiff(pass.hidden!.data, ref[step].hidden);
        assert.ok(dh <= 1e-5, `sequence ${step}: prompt hidden states differ from a single-request forward by ${dh}`);
        seqs.push(seq);
        got[step].logits.push(pass.logits.slice());
        next[step] = argmax(pass.logits);
        got[step].tokens.push(next[step]);
      }
      const active = seqs.map((_, k) => k).filter((k) => got[k].tokens.length < STEPS);
      if (active.length === 0) continue;
      // the running sequences in a shuffled order, so the pool has to move slots around
      const order = active.sort(() => rand() - 0.5);
      const passes = await batch.decodeStep(order.map((k) => seqs[k]), order.map((k) => next[k]));
      order.forEach((k, i) => {
        got[k].logits.push(passes[i].logits.slice());
        next[k] = argmax(passes[i].logits);
        got[k].tokens.push(next[k]);
      });
    }
    for (let k = 0; k < prompts.length; k++) {
      assert.deepEqual(got[k].tokens, ref[k].tokens, `sequence ${k} (prompt of ${prompts[k].length}) decodes the same tokens batched as alone`);
      for (let s = 0; s < STEPS; s++) {
        const d = maxAbsDiff(got[k].logits[s], ref[k].logits[s]);
        assert.ok(d < 1e-3, `sequence ${k} step ${s}: logits differ by ${d}`);
      }
      batch.closeSequence(seqs[k]);
    }
  } finally {
    await session.dispose();
    model.weights.close();
  }
}

test("batched decoding equals decoding alone: stories260K", () => checkModel(STORIES260K));
for (const c of RANDOM) {
  test(`batched decoding equals decoding alone: ${c.label}`, async () => {
    const path = join(dir, `${c.options.architecture}-${c.options.seed}.gguf`);
    writeRandomModel(path, c.options);
    await checkModel(path);
  });
}

test("KV pool: slots move and shrink without losing a sequence's rows", async () => {
  const { KvPool } = await import("../src/engine/kv-pool.js");
  const [L, KV, hd] = [2, 2, 4];
  const pool = new KvPool(L, KV, hd, 4096);
  const seqs = Array.from({ length: 8 }, () => pool.openSequence());
  // sequence k holds rows whose values encode (k, layer, kind, head, position, element)
  const value = (k: number, l: number, kind: number, h: number, t: number, e: number) => k * 1e5 + l * 1e4 + kind * 1e3 + h * 100 + t + e / 10;
  const lengths = [3, 600, 5, 1, 70, 2, 9, 4];
  pool.ensureCapacity(Math.max(...lengths));
  seqs.forEach((q, k) => {
    for (let l = 0; l < L; l++) {
      (["key", "value"] as const).forEach((kind, ki) => {
        const rows = new Float32Array(KV * lengths[k] * hd); // [1, kvH, T, hd]
        for (let h = 0; h < KV; h++) for (let t = 0; t < lengths[k]; t++) for (let e = 0; e < hd; e++) rows[(h * lengths[k] + t) * hd + e] = value(k, l, ki, h, t, e);
        pool.append(l, kind, q, rows, 0, lengths[k]);
      });
    }
    q.length = lengths[k];
  });
  const check = (k: number) => {
    const q = seqs[k];
    for (let l = 0; l < L; l++) {
      (["key", "value"] as const).forEach((kind, ki) => {
        const slot = pool.view(l, kind, q.slot, 1); // [1, kvH, capacity, hd]
        for (let h = 0; h < KV; h++) for (let t = 0; t < q.length; t++) for (let e = 0; e < hd; e++) {
          assert.equal(slot[(h * pool.capacity + t) * hd + e], Math.fround(value(k, l, ki, h, t, e)), `sequence ${k} layer ${l} ${kind} head ${h} row ${t}`);
        }
      });
    }
  };
  const bigBytes = pool.bytes;
  pool.gather([seqs[6], seqs[2], seqs[0]]);
  assert.deepEqual([seqs[6].slot, seqs[2].slot, seqs[0].slot], [0, 1, 2]);
  for (let k = 0; k < 8; k++) check(k);
  // the long sequence and most others end: the pool shrinks to 2 slots × 64 rows
  for (const k of [1, 3, 4, 5, 7, 0]) pool.closeSequence(seqs[k]);
  check(2);
  check(6);
  assert.ok(pool.capacity === 64 && pool.bytes * 16 <= bigBytes, `pool shrank to ${pool.bytes} bytes from ${bigBytes} (capacity ${pool.capacity})`);
  assert.equal(pool.open, 2);
});
