// `onepass convert` through its library API: stories260K GGUF → Hugging Face folder → loaded back gives the
// same model (reference pass, ORT session, greedy tokens, tokenizer); GGUF → ONNX graph, with and without int4.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import "../src/util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { convertModel } from "../src/convert/index.js";
import { convertCommand } from "../src/cli/commands/convert.js";
import { loadModel } from "../src/model/load.js";
import { openSafetensors } from "../src/model/safetensors.js";
import { createDecoderSession } from "../src/engine/session.js";
import { referenceForward } from "../src/reference/forward.js";
import { tokenizerFromHfFolder } from "../src/tokenizer/index.js";
import { tokenizerFromGguf } from "../src/model/gguf/tokenizer.js";
import { writeRandomModel } from "../src/model/gguf/writer.js";
import { InvalidArgumentError } from "../src/errors.js";
import type { LoadedModel } from "../src/model/spec.js";
import { STORIES260K, argmax, maxAbsDiff, tempDir } from "./helpers.js";

const GGUF = STORIES260K;
let root: string;
let cacheDir: string;
let hfDir: string;
let gguf: LoadedModel;
let hf: LoadedModel;

before(async () => {
  root = tempDir("convert-test");
  cacheDir = join(root, "graphs");
  hfDir = join(root, "stories-hf");
  await convertModel(GGUF, { to: "hf", out: hfDir });
  gguf = await loadModel(GGUF);
  hf = await loadModel(hfDir);
});
after(() => {
  gguf?.weights.close();
  hf?.weights.close();
  rmSync(root, { recursive: true, force: true });
});

test("the HF folder is a transformers-style checkpoint of the same model", () => {
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]) {
    assert.ok(existsSync(join(hfDir, f)), f);
  }
  const cfg = JSON.parse(readFileSync(join(hfDir, "config.json"), "utf8"));
  assert.deepEqual(cfg.architectures, ["LlamaForCausalLM"]);
  assert.deepEqual(
    [cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size, cfg.vocab_size, cfg.torch_dtype],
    [64, 5, 8, 4, 172, 512, "float32"],
  );
  // Same spec, except the RoPE pairing convention.
  assert.equal(gguf.spec.ropeStyle, "interleaved");
  assert.deepEqual({ ...hf.spec, name: undefined }, { ...gguf.spec, ropeStyle: "half", name: undefined });
  // q/k rows: llama.cpp's converter did w.reshape(heads, 2, hd/2, cols).swapaxes(1, 2), so GGUF row
  // h·hd + 2i + j holds HF row h·hd + j·hd/2 + i. Check the written file against that definition.
  const st = openSafetensors(join(hfDir, "model.safetensors"));
  try {
    const hd = gguf.spec.headDim;
    for (const [hfName, name, heads] of [
      ["model.layers.2.self_attn.q_proj.weight", "blk.2.attn_q.weight", gguf.spec.heads],
      ["model.layers.2.self_attn.k_proj.weight", "blk.2.attn_k.weight", gguf.spec.kvHeads],
    ] as const) {
      const hfW = st.read(hfName); // [heads·hd, d]
      const gW = gguf.weights.readF32(name); // [heads·hd, d] permuted
      const d = gguf.spec.dim;
      for (let h = 0; h < heads; h++) for (let j = 0; j < 2; j++) for (let i = 0; i < hd / 2; i++) {
        const hfRow = h * hd + j * (hd / 2) + i;
        const gRow = h * hd + 2 * i + j;
        assert.deepEqual(hfW.subarray(hfRow * d, hfRow * d + d), gW.subarray(gRow * d, gRow * d + d), `${hfName} row ${hfRow}`);
      }
    }
    // Untouched tensors are bit-identical.
    assert.deepEqual(st.read("model.layers.1.mlp.down_proj.weight"), gguf.weights.readF32("blk.1.ffn_down.weight"));
    assert.deepEqual(st.read("lm_head.weight"), gguf.weights.readF32("output.weight"));
  } finally {
    st.close();
  }
});

test("reference pass: HF folder (rotate_half, un-permuted) equals the GGUF (interleaved)", () => {
  const tokens = [1, 403, 407, 261, 378, 29, 395, 372, 260, 488, 275, 26];
  const a = referenceForward(gguf.spec, gguf.weights, tokens);
  const b = referenceForward(hf.spec, hf.weights, tokens);
  assert.ok(maxAbsDiff(a.logits, b.logits) <= 1e-5, `logits ${maxAbsDiff(a.logits, b.logits)}`);
  assert.ok(maxAbsDiff(a.hidden.data, b.hidden.data) <= 1e-5);
});

test("ORT session: identical greedy tokens and hidden states ≤ 1e-5", async () => {
  const sg = await createDecoderSession(gguf, { cacheDir, threads: 2 });
  const sh = await createDecoderSession(hf, { cacheDir, threads: 2 });
  try {
    const prompt = [1, 403, 407, 261, 378, 29, 395];
    const pg = await sg.forward(prompt, { hidden: true, logits: "all" });
    const ph = await sh.forward(prompt, { hidden: true, logits: "all" });
    assert.ok(maxAbsDiff(pg.hidden!.data, ph.hidden!.data) <= 1e-5, `hidden ${maxAbsDiff(pg.hidden!.data, ph.hidden!.data)}`);
    assert.ok(maxAbsDiff(pg.logits, ph.logits) <= 2e-5, `logits ${maxAbsDiff(pg.logits, ph.logits)}`);
    const V = gguf.spec.vocabSize;
    let g = argmax(pg.logits.subarray((prompt.length - 1) * V));
    let h = argmax(ph.logits.subarray((prompt.length - 1) * V));
    const tg = [g];
    const th = [h];
    for (let t = 0; t < 48; t++) {
      g = argmax((await sg.forward([g])).logits);
      h = argmax((await sh.forward([h])).logits);
      tg.push(g);
      th.push(h);
    }
    assert.deepEqual(th, tg);
  } finally {
    await sg.dispose();
    await sh.dispose();
  }
});

test("the converted tokenizer.json encodes and decodes like the GGUF vocabulary", async () => {
  const tg = await tokenizerFromGguf(GGUF);
  const th = await tokenizerFromHfFolder(hfDir);
  for (const text of ["Once upon a time, there was a little girl named Lily.", "  two  spaces\nand a newline", "<s>special</s> text", "ünïcödé 🙂 bytes"]) {
    const ids = tg.encode(text);
    assert.deepEqual(th.encode(text), ids, text);
    assert.equal(th.decode(ids), tg.decode(ids));
  }
  assert.deepEqual([th.bosTokenId, th.eosTokenIds, th.addBosByDefault], [1, [2], true]);
});

test("--dtype bf16 writes BF16 tensors that load back (rounded) with torch_dtype bfloat16", async () => {
  const out = join(root, "stories-bf16");
  await convertModel(GGUF, { to: "hf", out, dtype: "bf16" });
  assert.equal(JSON.parse(readFileSync(join(out, "config.json"), "utf8")).torch_dtype, "bfloat16");
  const m = await loadModel(out);
  try {
    assert.equal(m.weights.info("blk.0.ffn_up.weight").dtype, "bf16");
    const a = gguf.weights.readF32("blk.0.ffn_up.weight");
    const b = m.weights.readF32("blk.0.ffn_up.weight");
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= Math.abs(a[i]) * 2 ** -8, `element ${i}`);
  } finally {
    m.weights.close();
  }
});

test("random Qwen3 GGUF (tied, q/k norms, Q8_0) → HF folder → same reference pass", async () => {
  const path = join(root, "qwen3.gguf");
  writeRandomModel(path, { architecture: "qwen3", blocks: 2, dim: 64, heads: 4, kvHeads: 2, headDim: 32, ffnDim: 96, vocabSize: 300, dtype: "q8_0", seed: 9, tiedEmbeddings: true, weightStd: 0.1 });
  const out = join(root, "qwen3-hf");
  await convertModel(path, { to: "hf", out });
  const a = await loadModel(path);
  const b = await loadModel(out);
  try {
    const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    assert.deepEqual([cfg.architectures[0], cfg.tie_word_embeddings, cfg.head_dim], ["Qwen3ForCausalLM", true, 32]);
    assert.equal(openSafetensors(join(out, "model.safetensors")).has("lm_head.weight"), false);
    assert.deepEqual([b.spec.tiedEmbeddings, b.spec.qkNorm, b.spec.ropeStyle], [true, true, "half"]);
    const tokens = [1, 5, 77, 299, 3, 150];
    const ra = referenceForward(a.spec, a.weights, tokens);
    const rb = referenceForward(b.spec, b.weights, tokens);
    assert.ok(maxAbsDiff(ra.logits, rb.logits) <= 1e-5);
    assert.ok(maxAbsDiff(ra.hidden.data, rb.hidden.data) <= 1e-5);
  } finally {
    a.weights.close();
    b.weights.close();
  }
});

test("--to onnx writes a loadable decoder graph; --quantize int4 makes its linear layers MatMulNBits", async () => {
  const plain = join(root, "onnx-f32");
  const int4 = join(root, "onnx-int4");
  await convertModel(hfDir, { to: "onnx", out: plain });
  await convertModel(GGUF, { to: "onnx", out: int4, quantize: "int4", accuracyLevel: 0 });
  const opCount = (dir: string) => readFileSync(join(dir, "model.onnx")).toString("latin1").split("MatMulNBits").length - 1;
  assert.equal(opCount(plain), 0);
  // 5 layers × (fused qkv or q/k/v, o, gate/up, down): at least 4 per layer
  assert.ok(opCount(int4) >= 20, `MatMulNBits mentions: ${opCount(int4)}`);
  const manifest = JSON.parse(readFileSync(join(int4, "onepass.json"), "utf8"));
  assert.deepEqual(manifest.quantize, { type: "int4", blockSize: 32, scheme: "symmetric", accuracyLevel: 0, lmHead: false });
  for (const dir of [plain, int4]) {
    const s = await ort.InferenceSession.create(join(dir, "model.onnx"));
    assert.ok(s.outputNames.includes("logits") && s.outputNames.includes("hidden_states"), dir);
    await s.release();
  }
});

test("the convert command validates its arguments", async () => {
  await assert.rejects(() => convertCommand.run(["--model", GGUF, "--to", "tflite", "--out", root]), (e: unknown) => e instanceof InvalidArgumentError && e.field === "--to");
  await assert.rejects(() => convertCommand.run(["--model", GGUF, "--to", "hf"]), (e: unknown) => e instanceof InvalidArgumentError && e.field === "--out");
  await assert.rejects(() => convertCommand.run(["--model", GGUF, "--to", "hf", "--out", root, "--dtype", "f8"]), InvalidArgumentError);
  await assert.rejects(() => convertCommand.run(["--model", GGUF, "--to", "hf", "--out", root, "--quantize", "int4"]), (e: unknown) => e instanceof InvalidArgumentError && e.field === "quantize");
  await assert.rejects(() => convertCommand.run(["--bogus"]), InvalidArgumentError);
});
