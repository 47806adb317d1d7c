// The ORT decoder graph against the TypeScript reference pass on random-weight GGUF files written here,
// covering each graph path: qwen2 (q/k/v bias, half-style RoPE as a separate RotaryEmbedding, GQA ratio 4),
// qwen3 (per-head q/k RMSNorm, headDim ≠ dim/heads, RoPE fused into GroupQueryAttention), and a Q4_0 llama
// (MatMulNBits, packed QKV, interleaved RoPE, tied embeddings), a head size of 4 (plain-op attention), plus
// prefill-vs-cache continuity on each.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { loadModel } from "../src/model/load.js";
import { writeRandomModel, type RandomModelOptions } from "../src/model/gguf/writer.js";
import { createDecoderSession } from "../src/engine/session.js";
import { referenceForward } from "../src/reference/forward.js";
import { maxAbsDiff, tempDir } from "./helpers.js";

let dir: string;
before(() => {
  dir = tempDir("graph-random");
});
after(() => rmSync(dir, { recursive: true, force: true }));

function std(a: ArrayLike<number>): number {
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < a.length; i++) {
    s += a[i];
    s2 += a[i] * a[i];
  }
  return Math.sqrt(s2 / a.length - (s / a.length) ** 2);
}

const CASES: { label: string; options: RandomModelOptions; expect: Record<string, unknown> }[] = [
  {
    label: "qwen2, bias, GQA 8/2, headDim 8 (separate RotaryEmbedding, half style)",
    options: { architecture: "qwen2", blocks: 3, dim: 64, heads: 8, kvHeads: 2, ffnDim: 96, vocabSize: 300, dtype: "f32", seed: 11, weightStd: 0.15 },
    expect: { qkvBias: true, qkNorm: false, ropeStyle: "half", headDim: 8 },
  },
  {
    label: "qwen3, q/k norm, GQA 4/2, headDim 32 ≠ dim/heads (RoPE fused in GQA)",
    options: { architecture: "qwen3", blocks: 3, dim: 64, heads: 4, kvHeads: 2, headDim: 32, ffnDim: 96, vocabSize: 300, dtype: "f32", seed: 12, weightStd: 0.15 },
    expect: { qkvBias: false, qkNorm: true, ropeStyle: "half", headDim: 32 },
  },
  {
    label: "llama Q4_0, tied embeddings, headDim 16 (MatMulNBits, packed QKV, interleaved)",
    options: { architecture: "llama", blocks: 2, dim: 64, heads: 4, kvHeads: 4, ffnDim: 96, vocabSize: 320, dtype: "q4_0", seed: 13, weightStd: 0.15, tiedEmbeddings: true },
    expect: { tiedEmbeddings: true, ropeStyle: "interleaved", headDim: 16 },
  },
  {
    label: "llama, headDim 4, GQA 4/2 (plain-op attention: the GroupQueryAttention kernel needs head_size % 8 == 0)",
    options: { architecture: "llama", blocks: 2, dim: 16, heads: 4, kvHeads: 2, ffnDim: 40, vocabSize: 300, dtype: "f32", seed: 14, weightStd: 0.3 },
    expect: { ropeStyle: "interleaved", headDim: 4 },
  },
];

for (const c of CASES) {
  test(`graph matches the reference: ${c.label}`, async () => {
    const path = join(dir, `${c.options.architecture}-${c.options.seed}.gguf`);
    writeRandomModel(path, c.options);
    const model = await loadModel(path);
    for (const [k, v] of Object.entries(c.expect)) assert.equal((model.spec as unknown as Record<string, unknown>)[k], v, `spec.${k}`);
    if (c.options.dtype === "q4_0") assert.ok(model.weights.readInt4?.("blk.0.attn_q.weight") !== undefined, "Q4_0 weights reach MatMulNBits");
    // float-activation MatMulNBits (levels 0/1), comparable to the float reference; for Q4_0 the two levels
    // differ, so multi-token runs go through the second (patched) ORT session and one-token runs through the first
    const session = await createDecoderSession(model, { cacheDir: join(dir, "graphs"), threads: 2, accuracyLevel: 0, prefillAccuracyLevel: c.options.dtype === "q4_0" ? 1 : 0 });
    try {
      const tokens = Array.from({ length: 19 }, (_, i) => (i * 37 + 5) % model.spec.vocabSize);
      const ref = referenceForward(model.spec, model.weights, tokens);
      assert.ok(std(ref.logits) > 0.05, "random weights give non-trivial logits");
      const run = await session.forward(tokens, { hidden: true, logits: "all" });
      const dl = maxAbsDiff(run.logits, ref.logits);
      assert.ok(dl < 1e-4, `logits differ by ${dl}`);
      for (let l = 0; l <= model.spec.blocks; l++) {
        const dh = maxAbsDiff(run.hidden!.layer(l), ref.hidden.layer(l));
        assert.ok(dh < 1e-4, `hidden layer ${l} differs by ${dh}`);
      }
      // the same tokens in chunks through the KV cache give the same states and logits, one-token runs (the
      // decode branch of the graph's attention) among them, early and late in the cache
      session.reset();
      const parts = [tokens.slice(0, 5), tokens.slice(5, 6), tokens.slice(6, 17), tokens.slice(17, 18), tokens.slice(18)];
      let offset = 0;
      for (const p of parts) {
        const r = await session.forward(p, { hidden: true, logits: "all" });
        const want = ref.hidden.sliceTokens(offset, offset + p.length);
        assert.ok(maxAbsDiff(r.hidden!.data, want.data) < 1e-4, `chunk at ${offset}: hidden states differ`);
        const wantLogits = ref.logits.subarray(offset * model.spec.vocabSize, (offset + p.length) * model.spec.vocabSize);
        assert.ok(maxAbsDiff(r.logits, wantLogits) < 1e-4, `chunk at ${offset}: logits differ`);
        offset += p.length;
      }
    } finally {
      await session.dispose();
      model.weights.close();
    }
  });
}
