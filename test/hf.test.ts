// Hugging Face folders written by the test (random weights, transformers' tensor names) loaded by
// loadHfFolder: the name mapping, the config, and the ORT session against the TypeScript reference pass.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadHfFolder } from "../src/model/hf/index.js";
import { loadModel } from "../src/model/load.js";
import { createDecoderSession } from "../src/engine/session.js";
import { referenceForward } from "../src/reference/forward.js";
import { ModelFormatError, UnsupportedModelError } from "../src/errors.js";
import type { LoadedModel } from "../src/model/spec.js";
import { writeRandomHfFolder, type RandomHfOptions } from "./hf-random-folder.js";
import { maxAbsDiff, tempDir } from "./helpers.js";

let root: string;
let cacheDir: string;
before(() => {
  root = tempDir("hf-test");
  cacheDir = join(root, "graphs");
});
after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
function folder(o: RandomHfOptions): { dir: string; written: Map<string, Float32Array> } {
  const dir = join(root, `m${n++}`);
  return { dir, written: writeRandomHfFolder(dir, o) };
}

/** bfloat16 rounding done independently: Math.fround keeps the top 16 bits after round-half-even. */
function bf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  const lower = u[0] & 0xffff;
  let upper = u[0] >>> 16;
  if (lower > 0x8000 || (lower === 0x8000 && (upper & 1) === 1)) upper++;
  u[0] = upper << 16;
  return f[0];
}

const TOKENS = [1, 17, 200, 45, 3, 99, 128, 7, 255, 60, 61, 2];

/** ORT session (prefill with logits for all positions and the hidden-state taps) vs the reference pass. */
async function sessionVsReference(model: LoadedModel): Promise<{ logits: number; hidden: number }> {
  const ref = referenceForward(model.spec, model.weights, TOKENS);
  const session = await createDecoderSession(model, { cacheDir, threads: 2 });
  try {
    const pass = await session.forward(TOKENS, { hidden: true, logits: "all" });
    assert.ok(pass.hidden !== undefined);
    return { logits: maxAbsDiff(pass.logits, ref.logits), hidden: maxAbsDiff(pass.hidden.data, ref.hidden.data) };
  } finally {
    await session.dispose();
  }
}

test("Qwen2 BF16 folder: spec, HF→canonical names, session matches the reference pass", async () => {
  const { dir, written } = folder({ arch: "Qwen2ForCausalLM", dtype: "BF16", seed: 3 });
  const model = await loadModel(dir); // through the format dispatcher
  try {
    assert.equal(model.format, "hf");
    assert.match(model.fingerprint, /^sha256:[0-9a-f]{64}$/);
    const s = model.spec;
    assert.deepEqual(
      [s.architecture, s.blocks, s.dim, s.heads, s.kvHeads, s.headDim, s.ffnDim, s.vocabSize, s.ropeStyle, s.qkvBias, s.qkNorm, s.tiedEmbeddings],
      ["qwen2", 2, 64, 4, 2, 16, 128, 256, "half", true, false, false],
    );
    assert.deepEqual(s.eosTokenIds, [2]);
    // Names as transformers' Qwen2 modules call them → canonical names, values bf16-rounded.
    const pairs: [string, string][] = [
      ["model.embed_tokens.weight", "token_embd.weight"],
      ["lm_head.weight", "output.weight"],
      ["model.norm.weight", "output_norm.weight"],
      ["model.layers.1.input_layernorm.weight", "blk.1.attn_norm.weight"],
      ["model.layers.1.self_attn.q_proj.bias", "blk.1.attn_q.bias"],
      ["model.layers.1.self_attn.k_proj.weight", "blk.1.attn_k.weight"],
      ["model.layers.0.self_attn.v_proj.bias", "blk.0.attn_v.bias"],
      ["model.layers.0.self_attn.o_proj.weight", "blk.0.attn_output.weight"],
      ["model.layers.0.post_attention_layernorm.weight", "blk.0.ffn_norm.weight"],
      ["model.layers.1.mlp.gate_proj.weight", "blk.1.ffn_gate.weight"],
      ["model.layers.1.mlp.up_proj.weight", "blk.1.ffn_up.weight"],
      ["model.layers.1.mlp.down_proj.weight", "blk.1.ffn_down.weight"],
    ];
    for (const [hf, canonical] of pairs) {
      const got = model.weights.readF32(canonical);
      const want = written.get(hf)!;
      assert.equal(model.weights.info(canonical).dtype, "bf16");
      assert.equal(maxAbsDiff(got, Array.from(want, bf16)), 0, `${hf} → ${canonical}`);
    }
    const d = await sessionVsReference(model);
    assert.ok(d.logits <= 1e-4 && d.hidden <= 1e-4, `session vs reference: logits ${d.logits}, hidden ${d.hidden}`);
  } finally {
    model.weights.close();
  }
});

test("Qwen3 BF16 folder (head_dim ≠ hidden/heads, q/k norms): session matches the reference pass", async () => {
  const { dir, written } = folder({ arch: "Qwen3ForCausalLM", dtype: "BF16", headDim: 32, seed: 4 });
  const model = await loadHfFolder(dir);
  try {
    const s = model.spec;
    assert.deepEqual([s.architecture, s.headDim, s.qkvBias, s.qkNorm, s.ropeStyle], ["qwen3", 32, false, true, "half"]);
    assert.deepEqual(model.weights.info("blk.0.attn_q.weight").shape, [128, 64]);
    assert.equal(maxAbsDiff(model.weights.readF32("blk.1.attn_k_norm.weight"), Array.from(written.get("model.layers.1.self_attn.k_norm.weight")!, bf16)), 0);
    assert.equal(maxAbsDiff(model.weights.readF32("blk.0.attn_q_norm.weight"), Array.from(written.get("model.layers.0.self_attn.q_norm.weight")!, bf16)), 0);
    const d = await sessionVsReference(model);
    assert.ok(d.logits <= 1e-4 && d.hidden <= 1e-4, `session vs reference: logits ${d.logits}, hidden ${d.hidden}`);
  } finally {
    model.weights.close();
  }
});

test("tied embeddings (no lm_head), F16, sharded via model.safetensors.index.json", async () => {
  const { dir, written } = folder({ arch: "Qwen2ForCausalLM", dtype: "F16", tie: true, sharded: true, seed: 5 });
  const model = await loadHfFolder(dir);
  try {
    assert.equal(model.spec.tiedEmbeddings, true);
    assert.equal(model.weights.has("output.weight"), false);
    const emb = model.weights.readF32("token_embd.weight");
    const want = written.get("model.embed_tokens.weight")!;
    for (let i = 0; i < want.length; i += 97) assert.ok(Math.abs(emb[i] - want[i]) <= Math.abs(want[i]) * 2 ** -11 + 2 ** -24);
    // the last tensors live in the second shard
    assert.ok(model.weights.has("blk.1.ffn_down.weight"));
    const d = await sessionVsReference(model);
    assert.ok(d.logits <= 1e-4 && d.hidden <= 1e-4, `session vs reference: logits ${d.logits}, hidden ${d.hidden}`);
  } finally {
    model.weights.close();
  }
  // tie_word_embeddings=false but lm_head missing still means tied
  const other = folder({ arch: "Qwen3ForCausalLM", dtype: "F32", tie: true, config: { tie_word_embeddings: false }, seed: 6 });
  const m2 = await loadHfFolder(other.dir);
  assert.equal(m2.spec.tiedEmbeddings, true);
  m2.weights.close();
});

test("Llama with rope_scaling llama3, Mistral sliding window, generation_config eos ids, chat template", async () => {
  const rope = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
  const { dir } = folder({ arch: "LlamaForCausalLM", dtype: "F32", headDim: 16, config: { rope_scaling: rope, rope_theta: 500000 }, seed: 7 });
  writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ bos_token_id: 1, eos_token_id: [2, 5, 9] }));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: "{{ messages[0].content }}" }));
  const model = await loadHfFolder(dir);
  try {
    assert.deepEqual(model.spec.ropeScaling, { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 64 });
    assert.equal(model.spec.ropeTheta, 500000);
    assert.equal(model.spec.ropeStyle, "half");
    assert.deepEqual(model.spec.eosTokenIds, [2, 5, 9]);
    assert.equal(model.chatTemplate, "{{ messages[0].content }}");
    const d = await sessionVsReference(model);
    assert.ok(d.logits <= 1e-4 && d.hidden <= 1e-4, `session vs reference: logits ${d.logits}, hidden ${d.hidden}`);
  } finally {
    model.weights.close();
  }
  const mistral = folder({ arch: "MistralForCausalLM", dtype: "F32", config: { sliding_window: 128, max_position_embeddings: 4096 } });
  const m = await loadHfFolder(mistral.dir);
  assert.deepEqual([m.spec.architecture, m.spec.contextLength], ["llama", 128]);
  m.weights.close();
});

/** Asserts `fn` rejects with `cls`, the error naming `file` and `field`. */
async function rejectsWith(fn: () => Promise<unknown>, cls: Function, file: string, field: string | RegExp, message?: RegExp): Promise<void> {
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    const err = e as ModelFormatError;
    assert.equal(err.file, file);
    if (typeof field === "string") assert.equal(err.field, field);
    else assert.match(err.field ?? "", field);
    if (message) assert.match(err.message, message);
    return true;
  });
}

test("a BF16 folder with F32 norms and biases loads: 1-D tensors in any float dtype, matrices as the config says", async () => {
  const { dir, written } = folder({ arch: "Qwen2ForCausalLM", dtype: "BF16", vectorDtype: "F32", seed: 11 });
  const model = await loadHfFolder(dir);
  try {
    assert.equal(model.weights.info("blk.0.attn_norm.weight").dtype, "f32");
    assert.equal(model.weights.info("blk.0.attn_q.bias").dtype, "f32");
    assert.equal(model.weights.info("blk.0.attn_q.weight").dtype, "bf16");
    // the F32 vectors come back exactly, the matrices bf16-rounded
    assert.equal(maxAbsDiff(model.weights.readF32("output_norm.weight"), written.get("model.norm.weight")!), 0);
    assert.equal(maxAbsDiff(model.weights.readF32("blk.1.attn_k.bias"), written.get("model.layers.1.self_attn.k_proj.bias")!), 0);
    assert.equal(maxAbsDiff(model.weights.readF32("blk.1.ffn_up.weight"), Array.from(written.get("model.layers.1.mlp.up_proj.weight")!, bf16)), 0);
    const d = await sessionVsReference(model);
    assert.ok(d.logits <= 1e-4 && d.hidden <= 1e-4, `session vs reference: logits ${d.logits}, hidden ${d.hidden}`);
  } finally {
    model.weights.close();
  }
  // the same F32 vectors under an F16 config still load; F32 *matrices* under a BF16 config do not
  const f16 = folder({ arch: "LlamaForCausalLM", dtype: "F16", vectorDtype: "F32", seed: 12 });
  (await loadHfFolder(f16.dir)).weights.close();
  const wrong = folder({ arch: "LlamaForCausalLM", dtype: "F32", vectorDtype: "BF16", config: { torch_dtype: "bfloat16" }, seed: 13 });
  await rejectsWith(() => loadHfFolder(wrong.dir), ModelFormatError, join(wrong.dir, "config.json"), "torch_dtype", /BF16.*F32/);
});

test("bad folders give typed errors naming the file and field", async () => {
  // unknown architecture
  const a = folder({ arch: "LlamaForCausalLM", dtype: "F32", config: { architectures: ["GPTNeoXForCausalLM"] } });
  await rejectsWith(() => loadHfFolder(a.dir), UnsupportedModelError, join(a.dir, "config.json"), "architectures", /GPTNeoXForCausalLM/);
  // config dtype contradicts the stored dtype
  const b = folder({ arch: "Qwen2ForCausalLM", dtype: "F16", config: { torch_dtype: "bfloat16" } });
  await rejectsWith(() => loadHfFolder(b.dir), ModelFormatError, join(b.dir, "config.json"), "torch_dtype", /BF16.*F16/);
  // missing shard
  const c = folder({ arch: "Qwen2ForCausalLM", dtype: "BF16", sharded: true });
  rmSync(join(c.dir, "model-00002-of-00002.safetensors"));
  await rejectsWith(() => loadHfFolder(c.dir), ModelFormatError, join(c.dir, "model.safetensors.index.json"), /^weight_map\./, /model-00002-of-00002/);
  // misnamed shard: the index points a tensor at the wrong (existing) shard
  const d = folder({ arch: "Qwen2ForCausalLM", dtype: "BF16", sharded: true });
  const indexPath = join(d.dir, "model.safetensors.index.json");
  const index = JSON.parse(readFileSync(indexPath, "utf8"));
  index.weight_map["lm_head.weight"] = "model-00001-of-00002.safetensors";
  writeFileSync(indexPath, JSON.stringify(index));
  await rejectsWith(() => loadHfFolder(d.dir), ModelFormatError, join(d.dir, "model-00001-of-00002.safetensors"), "lm_head.weight");
  // safetensors header length beyond the file
  const e = folder({ arch: "Qwen3ForCausalLM", dtype: "BF16" });
  const st = join(e.dir, "model.safetensors");
  const bytes = readFileSync(st);
  bytes.writeBigUInt64LE(BigInt(bytes.length * 2), 0);
  writeFileSync(st, bytes);
  await rejectsWith(() => loadHfFolder(e.dir), ModelFormatError, st, "header length", /beyond the file/);
  // no weights at all, misnamed single file
  const f = folder({ arch: "Qwen3ForCausalLM", dtype: "BF16" });
  renameSync(join(f.dir, "model.safetensors"), join(f.dir, "model.safetensor"));
  await rejectsWith(() => loadHfFolder(f.dir), ModelFormatError, join(f.dir, "model.safetensors"), /.*/);
  // shape that contradicts config.json
  const g = folder({ arch: "Qwen2ForCausalLM", dtype: "F32", config: { intermediate_size: 96 } });
  await rejectsWith(() => loadHfFolder(g.dir), ModelFormatError, join(g.dir, "model.safetensors"), "model.layers.0.mlp.gate_proj.weight", /96/);
  // missing required field and unsupported rope scaling
  const h = folder({ arch: "Qwen2ForCausalLM", dtype: "F32", config: { hidden_size: "64" } });
  await rejectsWith(() => loadHfFolder(h.dir), ModelFormatError, join(h.dir, "config.json"), "hidden_size");
  const i = folder({ arch: "LlamaForCausalLM", dtype: "F32", config: { rope_scaling: { rope_type: "yarn", factor: 4 } } });
  await rejectsWith(() => loadHfFolder(i.dir), UnsupportedModelError, join(i.dir, "config.json"), "rope_scaling.rope_type", /yarn/);
});
