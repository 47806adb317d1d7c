// node-llama-cpp (llama.cpp, pinned 3.21.1) as the oracle: the same GGUF file, the same prompt token ids,
// greedy decoding; onepass must pick the same next token at every step.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { closeSync, openSync, readSync, rmSync } from "node:fs";
import { gguf } from "@huggingface/gguf";
import { getLlama, type Llama, type LlamaModel, type Token } from "node-llama-cpp";
import { Engine } from "../src/engine/engine.js";
import { STORIES260K, tempDir } from "./helpers.js";

const MODEL = STORIES260K;
const PROMPTS = ["Once upon a time", "The little dog ran to the park and", "Tom and Sue were friends. One day", "She said, \"I"];
const STEPS = 64;

let engine: Engine;
let llama: Llama;
let oracle: LlamaModel;
let cacheDir: string;

before(async () => {
  cacheDir = tempDir("llamacpp-test");
  engine = await Engine.load(MODEL, { cacheDir, threads: 1 });
  llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never });
  oracle = await llama.loadModel({ modelPath: MODEL });
});
after(async () => {
  await engine?.dispose();
  await oracle?.dispose();
  await llama?.dispose();
  rmSync(cacheDir, { recursive: true, force: true });
});

/** llama.cpp's greedy continuation of `prompt` (token ids), `steps` tokens, EOS included if it comes. */
async function llamaGreedy(prompt: number[], steps: number): Promise<number[]> {
  const context = await oracle.createContext({ contextSize: 256, threads: 1 });
  try {
    const sequence = context.getSequence();
    const out: number[] = [];
    for await (const token of sequence.evaluate(prompt as Token[], { temperature: 0 })) {
      out.push(token);
      if (out.length >= steps || token === oracle.tokens.eos) break;
    }
    return out;
  } finally {
    await context.dispose();
  }
}

test(`greedy tokens equal llama.cpp's for ${PROMPTS.length} prompts × ${STEPS} tokens`, async () => {
  for (const text of PROMPTS) {
    const prompt = engine.tokenizer.encode(text);
    const expected = await llamaGreedy(prompt, STEPS);
    const r = await engine.generate({ prompt, maxTokens: STEPS, temperature: 0 }).result;
    const ours = r.finishReason === "eos" ? [...r.tokens, engine.tokenizer.eosTokenIds[0]] : r.tokens;
    assert.deepEqual(ours, expected, `prompt ${JSON.stringify(text)}`);
    assert.ok(ours.length === STEPS || r.finishReason === "eos");
  }
});

// The hidden-state convention, against parsers and code onepass did not write: the last layer is the
// residual stream after the final norm — llama.cpp's embedding of the last token (node-llama-cpp's
// getEmbeddingFor on a model without pooling) — and layer 0 is the token embedding row, read from the file
// at the offset @huggingface/gguf reports.
test("hidden states: last layer = llama.cpp's final-norm embedding of the last token; layer 0 = the file's embedding rows", async () => {
  const info = await gguf(MODEL, { allowLocalFile: true });
  const embd = info.tensorInfos.find((t) => t.name === "token_embd.weight")!;
  assert.equal(embd.dtype, 0); // F32 in stories260K
  const d = Number(embd.shape[0]);
  const fd = openSync(MODEL, "r");
  const row = (id: number): Float32Array => {
    const buf = Buffer.alloc(d * 4);
    readSync(fd, buf, 0, d * 4, Number(info.tensorDataOffset + embd.offset) + id * d * 4);
    return new Float32Array(buf.buffer, buf.byteOffset, d); // [d]
  };
  const context = await oracle.createEmbeddingContext({ contextSize: 256, threads: 1 });
  try {
    for (const text of PROMPTS) {
      const ids = engine.tokenizer.encode(text);
      const h = (await engine.forward(ids, { hidden: true })).hidden!; // [L+1, T, d]
      assert.equal(h.layers, engine.spec.blocks + 1);
      const theirs = (await context.getEmbeddingFor(ids as Token[])).vector; // [d]
      const last = h.token(h.layers - 1, h.tokens - 1);
      const beforeNorm = h.token(h.layers - 2, h.tokens - 1);
      const diff = (a: ArrayLike<number>) => Math.max(...Array.from(theirs, (v, i) => Math.abs(v - a[i])));
      // |h| ≈ 17–23 here; llama.cpp's float order differs from ORT's by a few 1e-3, the layer before the
      // final norm by more than 1
      assert.ok(diff(last) < 2e-2, `last layer vs llama.cpp: ${diff(last)}`);
      assert.ok(diff(beforeNorm) > 1, `layer L-1 should not match: ${diff(beforeNorm)}`);
      ids.forEach((id, t) => assert.deepEqual(Array.from(h.token(0, t)), Array.from(row(id)), `layer 0, token ${t}`));
    }
  } finally {
    closeSync(fd);
    await context.dispose();
  }
});

// A second file on other paths: F16 token embedding, the 32k Llama-2 SentencePiece vocabulary, and head size 4
// (below GroupQueryAttention's minimum, so the graph uses plain-op attention). Random weights: gibberish text,
// but every greedy choice must still be llama.cpp's.
test("llama-2-tiny-random (F16 embedding, head size 4, 32k vocab): greedy tokens equal llama.cpp's", async () => {
  const path = "test/fixtures/llama-2-tiny-random.gguf";
  const tiny = await Engine.load(path, { cacheDir, threads: 1 });
  const tinyOracle = await llama.loadModel({ modelPath: path });
  try {
    for (const text of ["Hello world", "The capital of France is"]) {
      const prompt = tiny.tokenizer.encode(text);
      assert.deepEqual(prompt.slice(1), tinyOracle.tokenize(text, false), "same prompt ids (after BOS)");
      const context = await tinyOracle.createContext({ contextSize: 256, threads: 1 });
      const expected: number[] = [];
      try {
        for await (const token of context.getSequence().evaluate(prompt as Token[], { temperature: 0 })) {
          expected.push(token);
          if (expected.length >= 32) break;
        }
      } finally {
        await context.dispose();
      }
      const r = await tiny.generate({ prompt, maxTokens: 32, temperature: 0 }).result;
      assert.deepEqual(r.tokens.slice(0, expected.length), expected, `prompt ${JSON.stringify(text)}`);
    }
  } finally {
    await tiny.dispose();
    await tinyOracle.dispose();
  }
});
