import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { gguf } from "@huggingface/gguf";
import { InvalidArgumentError, ModelFormatError, OnepassError, UnsupportedModelError } from "../src/errors.js";
import { defaultModelPath, loadModel } from "../src/model/load.js";
import { fingerprintFile } from "../src/model/fingerprint.js";
import { GgufWeightSource, loadGguf, readGgufHeader, writeGguf, writeRandomModel, randomModelContents } from "../src/model/gguf/index.js";
import type { TensorInput } from "../src/model/gguf/writer.js";
import { tempDir } from "./helpers.js";

const STORIES = defaultModelPath();
// Published in /work/shared/models/SOURCES.md (and pinned by the source repository's own test).
const STORIES_SHA256 = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d";
const tmp = tempDir("gguf");
process.on("exit", () => rmSync(tmp, { recursive: true, force: true }));
let fileNo = 0;
const tmpFile = (name = "m.gguf") => join(tmp, `${fileNo++}-${name}`);

/** Expect `fn` to reject/throw an instance of `cls` whose message names the file and matches `field`. */
async function expectError(fn: () => unknown, cls: new (...a: never[]) => OnepassError, file: string, field?: string | RegExp) {
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof cls, `expected ${cls.name}, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`);
  const err = caught as OnepassError;
  assert.ok(err.message.includes(file), `message should name the file: ${err.message}`);
  assert.equal(err.file, file);
  if (typeof field === "string") assert.equal(err.field, field, err.message);
  else if (field !== undefined) assert.match(err.field ?? "", field, err.message);
  return err;
}

test("stories260K: spec matches the published header values", async () => {
  const m = await loadGguf(STORIES);
  try {
    const s = m.spec;
    assert.equal(m.format, "gguf");
    assert.equal(s.architecture, "llama");
    assert.equal(s.blocks, 5);
    assert.equal(s.dim, 64);
    assert.equal(s.ffnDim, 172);
    assert.equal(s.heads, 8);
    assert.equal(s.kvHeads, 4);
    assert.equal(s.headDim, 8);
    assert.equal(s.ropeDim, 8);
    assert.equal(s.contextLength, 2048);
    assert.ok(Math.abs(s.rmsNormEps - 1e-5) < 1e-12);
    assert.equal(s.ropeTheta, 10000);
    assert.equal(s.ropeStyle, "interleaved");
    assert.equal(s.vocabSize, 512);
    assert.equal(s.bosTokenId, 1);
    assert.deepEqual(s.eosTokenIds, [2]);
    assert.equal(s.tiedEmbeddings, false);
    assert.equal(s.qkvBias, false);
    assert.equal(s.qkNorm, false);
    assert.equal(s.ropeScaling, undefined);
    assert.equal(m.fingerprint, `sha256:${STORIES_SHA256}`);
    const list = m.weights.list();
    assert.equal(list.length, 48);
    assert.ok(list.every((t) => t.dtype === "f32"));
    assert.deepEqual(m.weights.info("blk.0.attn_k.weight").shape, [32, 64]); // [kvHeads*headDim, dim]
    assert.deepEqual(m.weights.info("blk.0.ffn_down.weight").shape, [64, 172]); // [dim, ffn]
    assert.deepEqual(m.weights.info("token_embd.weight").shape, [512, 64]);
    // SOURCES.md: output.weight is stored separately and equals token_embd.weight.
    assert.deepEqual(m.weights.readF32("output.weight"), m.weights.readF32("token_embd.weight"));
  } finally {
    m.weights.close();
  }
});

test("header parser agrees with @huggingface/gguf on real files", async () => {
  const files = [STORIES, ...["gpt-2", "llama-spm", "phi-3"].map((v) => `test/fixtures/ggml-vocab/ggml-vocab-${v}.gguf`)];
  for (const f of files) {
    const ours = readGgufHeader(f);
    const theirs = await gguf(f, { allowLocalFile: true });
    assert.equal(ours.version, theirs.metadata.version);
    assert.equal(ours.dataStart, theirs.tensorDataOffset === undefined ? ours.dataStart : Number(theirs.tensorDataOffset), f);
    for (const [key, entry] of ours.metadata) {
      const v = (theirs.metadata as Record<string, unknown>)[key];
      if (Array.isArray(entry.value)) {
        assert.ok(Array.isArray(v), key);
        assert.equal(entry.value.length, (v as unknown[]).length, key);
        assert.deepEqual(entry.value.slice(0, 50), (v as unknown[]).slice(0, 50), key);
        assert.deepEqual(entry.value.at(-1), (v as unknown[]).at(-1), key);
      } else {
        assert.deepEqual(entry.value, v, key);
      }
    }
    assert.equal(ours.tensors.length, theirs.tensorInfos.length);
    ours.tensors.forEach((t, i) => {
      const u = theirs.tensorInfos[i]!;
      assert.equal(t.name, u.name);
      assert.deepEqual(t.ne, u.shape.map(Number));
      assert.equal(t.type.id, u.dtype);
      assert.equal(t.dataOffset, Number(theirs.tensorDataOffset) + Number(u.offset));
    });
  }
});

test("readF32 returns the bytes at the tensor's offset as row-major [out, in]", async () => {
  const theirs = await gguf(STORIES, { allowLocalFile: true });
  const bytes = readFileSync(STORIES);
  const m = await loadGguf(STORIES);
  for (const name of ["blk.2.attn_q.weight", "blk.4.ffn_down.weight", "output_norm.weight"]) {
    const info = theirs.tensorInfos.find((t) => t.name === name)!;
    const start = Number(theirs.tensorDataOffset) + Number(info.offset);
    const n = info.shape.reduce((a, b) => a * Number(b), 1);
    const expected = new Float32Array(n);
    for (let i = 0; i < n; i++) expected[i] = bytes.readFloatLE(start + 4 * i);
    assert.deepEqual(m.weights.readF32(name), expected);
    // ne0 (innermost) is the input width: shape is reversed.
    assert.deepEqual(m.weights.info(name).shape, [...info.shape].reverse().map(Number));
  }
  m.weights.close();
});

// f16/bf16 conversions are tested in half.test.ts.

/** Write tensors (no model metadata) and open them through the GGUF weight source. */
function roundTrip(tensors: TensorInput[]): GgufWeightSource {
  const path = tmpFile("t.gguf");
  writeGguf(path, { metadata: { "general.architecture": "none" }, tensors });
  return new GgufWeightSource(readGgufHeader(path));
}

function randomValues(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale * (i % 7 === 0 ? 3 : 1);
  }
  return out;
}

test("F32/F16/BF16/Q8_0/Q4_0 writer → reader round trip within the quantisation step", () => {
  const x = randomValues(8 * 96, 7, 0.5); // [8, 96]
  const w = roundTrip(["f32", "f16", "bf16", "q8_0", "q4_0"].map((dtype) => ({ name: dtype, shape: [8, 96], dtype: dtype as TensorInput["dtype"], data: x })));
  assert.deepEqual(w.readF32("f32"), x);
  const f16 = w.readF32("f16");
  const bf16 = w.readF32("bf16");
  for (let i = 0; i < x.length; i++) {
    assert.ok(Math.abs(f16[i]! - x[i]!) <= Math.abs(x[i]!) * 2 ** -11 + 2 ** -25);
    assert.ok(Math.abs(bf16[i]! - x[i]!) <= Math.abs(x[i]!) * 2 ** -8);
  }
  for (const [dtype, steps] of [["q8_0", 127], ["q4_0", 8]] as const) {
    const y = w.readF32(dtype);
    for (let b = 0; b < x.length / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
      const step = amax / steps;
      for (let j = 0; j < 32; j++) {
        const err = Math.abs(y[b * 32 + j]! - x[b * 32 + j]!);
        // Q4_0 maps [-8d, 7d]: the value opposite the max magnitude may clamp to one full step; d itself is
        // rounded to f16 (relative 2^-11, times up to 127 or 8 codes).
        assert.ok(err <= (dtype === "q8_0" ? 0.57 : 1.02) * step, `${dtype} block ${b} elem ${j}: err ${err} step ${step}`);
      }
    }
  }
  w.close();
});

test("Q8_0 and Q4_0: hand-computed blocks", () => {
  const q8in = new Float32Array(32);
  q8in.set([127, -63.5, 0.5, -0.5, 1.49]);
  const q4in = new Float32Array(32);
  q4in[0] = -8; q4in[1] = 3; q4in[16] = 7.6; q4in[17] = -3.2; q4in[2] = -0.5; q4in[3] = 0.49;
  const q4pos = new Float32Array(32);
  q4pos[0] = 8; q4pos[1] = -2;
  const w = roundTrip([
    { name: "q8", shape: [32], dtype: "q8_0", data: q8in },
    { name: "q4", shape: [32], dtype: "q4_0", data: q4in },
    { name: "q4pos", shape: [32], dtype: "q4_0", data: q4pos },
  ]);
  // amax 127 → d = 1 (half 0x3C00); q = round half away from zero.
  const q8raw = w.readRaw("q8");
  assert.deepEqual([...q8raw.subarray(0, 7)], [0x00, 0x3c, 0x7f, 0xc0, 0x01, 0xff, 0x01]);
  assert.deepEqual([...w.readF32("q8").subarray(0, 6)], [127, -64, 1, -1, 1, 0]);
  // max-magnitude value -8 → d = -8 / -8 = 1; q = min(15, trunc(x + 8.5)); byte j = q[j] | q[j+16] << 4.
  const q4raw = w.readRaw("q4");
  assert.deepEqual([...q4raw.subarray(0, 6)], [0x00, 0x3c, 0xf0, 0x5b, 0x88, 0x88]);
  const q4 = w.readF32("q4");
  assert.deepEqual([q4[0], q4[1], q4[2], q4[3], q4[16], q4[17], q4[31]], [-8, 3, 0, 0, 7, -3, 0]);
  // max-magnitude value +8 → d = -1 (half 0xBC00): 8 → q 0 → -1 * (0 - 8) = 8; -2 → trunc(10.5) = 10 → -2.
  const pos = w.readF32("q4pos");
  assert.deepEqual([...w.readRaw("q4pos").subarray(0, 2)], [0x00, 0xbc]);
  assert.deepEqual([pos[0], pos[1], pos[2]], [8, -2, -0]);
  w.close();
});

test("Q4_K: block built by hand from the spec formula", () => {
  const sc = [1, 2, 3, 63, 17, 40, 5, 33]; // 6-bit sub-block scales
  const mn = [0, 1, 62, 7, 20, 3, 48, 9]; // 6-bit sub-block mins
  const block = new Uint8Array(144);
  const dv = new DataView(block.buffer);
  dv.setUint16(0, 0x3c00, true); // d = 1
  dv.setUint16(2, 0x3800, true); // dmin = 0.5
  for (let j = 0; j < 4; j++) {
    block[4 + j] = sc[j]! | ((sc[j + 4]! >> 4) << 6);
    block[8 + j] = mn[j]! | ((mn[j + 4]! >> 4) << 6);
    block[12 + j] = (sc[j + 4]! & 15) | ((mn[j + 4]! & 15) << 4);
  }
  const q = (e: number) => (e * 7 + 3) % 16; // the 4-bit code of element e
  for (let e = 0; e < 256; e++) {
    const s = e >> 5; // sub-block of 32
    const byte = 16 + 32 * (s >> 1) + (e & 31);
    block[byte] = block[byte]! | (s % 2 === 0 ? q(e) : q(e) << 4);
  }
  const w = roundTrip([{ name: "k", shape: [256], dtype: "q4_k", raw: block }]);
  const y = w.readF32("k");
  for (let e = 0; e < 256; e++) {
    const s = e >> 5;
    assert.equal(y[e], Math.fround(1 * sc[s]! * q(e) - 0.5 * mn[s]!), `element ${e}`);
  }
  w.close();
});

test("Q6_K: block built by hand from the spec formula", () => {
  const scales = Array.from({ length: 16 }, (_, i) => i * 9 - 70); // int8, negatives included
  const block = new Uint8Array(210);
  const dv = new DataView(block.buffer);
  scales.forEach((s, i) => dv.setInt8(192 + i, s));
  dv.setUint16(208, 0x3400, true); // d = 0.25
  const q = (e: number) => (e * 13 + 5) % 64; // the 6-bit code of element e
  const scaleIndex = (e: number) => 8 * (e >> 7) + ((e & 31) >> 4) + 2 * ((e & 127) >> 5);
  for (let e = 0; e < 256; e++) {
    const half = e >> 7, quarter = (e & 127) >> 5, l = e & 31;
    const ql = 64 * half + l + (quarter & 1) * 32;
    block[ql] = block[ql]! | (quarter < 2 ? q(e) & 15 : (q(e) & 15) << 4);
    const qh = 128 + 32 * half + l;
    block[qh] = block[qh]! | ((q(e) >> 4) << (2 * quarter));
  }
  const w = roundTrip([{ name: "k", shape: [2, 256], dtype: "q6_k", raw: new Uint8Array([...block, ...block]) }]);
  const y = w.readF32("k");
  for (let e = 0; e < 512; e++) {
    const i = e % 256;
    assert.equal(y[e], 0.25 * scales[scaleIndex(i)]! * (q(i) - 32), `element ${e}`);
  }
  w.close();
});

test("readInt4 of Q4_0 dequantised by the MatMulNBits formula equals readF32", () => {
  const n = 5, k = 96;
  const x = randomValues(n * k, 3, 0.1);
  const w = roundTrip([
    { name: "w", shape: [n, k], dtype: "q4_0", data: x },
    { name: "f", shape: [n, k], dtype: "f32", data: x },
    { name: "q8", shape: [n, k], dtype: "q8_0", data: x },
  ]);
  const blocks = w.readInt4("w")!;
  assert.equal(blocks.n, n);
  assert.equal(blocks.k, k);
  assert.equal(blocks.blockSize, 32);
  assert.equal(blocks.zeroPoints, undefined);
  const nb = Math.ceil(k / 32);
  assert.equal(blocks.data.length, n * nb * 16);
  assert.equal(blocks.scales.length, n * nb);
  const ref = w.readF32("w");
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < k; c++) {
      const byte = blocks.data[(r * nb + (c >> 5)) * 16 + ((c & 31) >> 1)]!;
      const nib = c & 1 ? byte >> 4 : byte & 15;
      assert.equal(blocks.scales[r * nb + (c >> 5)]! * (nib - 8), ref[r * k + c]);
    }
  }
  assert.equal(w.readInt4("f"), undefined);
  assert.equal(w.readInt4("q8"), undefined);
  w.close();
});

test("random qwen2 / qwen3 / llama models round-trip through writer → loader", async () => {
  for (const [architecture, headDim, tied, dtype] of [["qwen2", undefined, true, "q4_0"], ["qwen3", 48, false, "q8_0"], ["llama", undefined, false, "f16"]] as const) {
    const path = tmpFile(`${architecture}.gguf`);
    writeRandomModel(path, { architecture, blocks: 3, dim: 64, heads: 4, kvHeads: 2, headDim, ffnDim: 96, vocabSize: 320, dtype, seed: 11, tiedEmbeddings: tied });
    const m = await loadModel(path);
    const s = m.spec;
    const hd = headDim ?? 16;
    assert.equal(s.architecture, architecture);
    assert.equal(s.blocks, 3);
    assert.equal(s.dim, 64);
    assert.equal(s.heads, 4);
    assert.equal(s.kvHeads, 2);
    assert.equal(s.headDim, hd);
    assert.equal(s.ropeDim, hd);
    assert.equal(s.ffnDim, 96);
    assert.equal(s.vocabSize, 320);
    assert.equal(s.ropeStyle, architecture === "llama" ? "interleaved" : "half");
    assert.equal(s.ropeTheta, architecture === "llama" ? 10000 : 1e6);
    assert.equal(s.qkvBias, architecture === "qwen2");
    assert.equal(s.qkNorm, architecture === "qwen3");
    assert.equal(s.tiedEmbeddings, tied);
    assert.equal(s.bosTokenId, 1);
    assert.deepEqual(s.eosTokenIds, [2]);
    assert.deepEqual(m.weights.info("blk.1.attn_q.weight"), { name: "blk.1.attn_q.weight", shape: [4 * hd, 64], dtype });
    assert.deepEqual(m.weights.info("blk.1.attn_output.weight").shape, [64, 4 * hd]);
    assert.equal(m.weights.has("output.weight"), !tied);
    if (architecture === "qwen3") assert.deepEqual(m.weights.info("blk.0.attn_q_norm.weight").shape, [hd]);
    if (architecture === "qwen2") assert.deepEqual(m.weights.info("blk.0.attn_k.bias").shape, [2 * hd]);
    const q = m.weights.readF32("blk.2.ffn_up.weight");
    const rms = Math.sqrt(q.reduce((a, v) => a + v * v, 0) / q.length);
    assert.ok(rms > 0.01 && rms < 0.04, `weights std ≈ 0.02, got ${rms}`);
    // An independent reader sees the same file.
    const theirs = await gguf(path, { allowLocalFile: true });
    assert.equal(theirs.metadata["general.architecture"], architecture);
    assert.equal(theirs.tensorInfos.length, m.weights.list().length);
    m.weights.close();
  }
  // Same seed → same bytes; the tokenizer can be copied from another GGUF.
  const a = tmpFile(), b = tmpFile();
  const opts = { architecture: "llama", blocks: 1, dim: 32, heads: 2, kvHeads: 2, ffnDim: 64, vocabSize: 512, dtype: "q4_0", seed: 5, tokenizer: `copy-from:${STORIES}` } as const;
  writeRandomModel(a, opts);
  writeRandomModel(b, opts);
  assert.equal(await fingerprintFile(a), await fingerprintFile(b));
  const copied = readGgufHeader(a).metadata.get("tokenizer.ggml.tokens")!.value as string[];
  assert.deepEqual(copied, readGgufHeader(STORIES).metadata.get("tokenizer.ggml.tokens")!.value);
});

test("fingerprint: streamed sha256, cached, and changes with the content", async () => {
  const path = tmpFile();
  copyFileSync(STORIES, path);
  assert.equal(await fingerprintFile(path), `sha256:${STORIES_SHA256}`);
  const bytes = readFileSync(path);
  bytes[bytes.length - 1] ^= 1;
  writeFileSync(path, bytes);
  const changed = await fingerprintFile(path);
  assert.equal(changed, `sha256:${createHash("sha256").update(bytes).digest("hex")}`);
  assert.notEqual(changed, `sha256:${STORIES_SHA256}`);
});

/** A small valid llama model's contents, to break in one place. */
function tinyModel() {
  return randomModelContents({ architecture: "llama", blocks: 2, dim: 32, heads: 4, kvHeads: 2, ffnDim: 64, vocabSize: 260, dtype: "f32", seed: 1 });
}

test("bad files give typed errors naming the file and the field/offset", async () => {
  const header = readGgufHeader(STORIES);
  // Truncated inside the header / metadata.
  for (const cut of [2, 10, 100, 5000, header.dataStart - 3]) {
    const p = tmpFile();
    copyFileSync(STORIES, p);
    truncateSync(p, cut);
    const err = await expectError(() => loadGguf(p), ModelFormatError, p);
    assert.match(err.message, /truncated|beyond the end of the file/);
    assert.ok(err.offset !== undefined && err.offset <= cut, err.message);
  }
  // Wrong magic.
  const bytes = readFileSync(STORIES);
  const badMagic = tmpFile();
  writeFileSync(badMagic, Buffer.concat([Buffer.from("GGML"), bytes.subarray(4)]));
  let err = await expectError(() => loadGguf(badMagic), ModelFormatError, badMagic, "magic");
  assert.equal(err.offset, 0);
  // GGUF v2 has the same layout for little-endian files.
  const v2 = tmpFile();
  const b2 = Buffer.from(bytes);
  b2.writeUInt32LE(2, 4);
  writeFileSync(v2, b2);
  const m2 = await loadGguf(v2);
  assert.equal(m2.spec.blocks, 5);
  m2.weights.close();
  // Unsupported versions.
  for (const v of [1, 4, 0x03000000]) {
    const p = tmpFile();
    const b = Buffer.from(bytes);
    b.writeUInt32LE(v, 4);
    writeFileSync(p, b);
    err = await expectError(() => loadGguf(p), UnsupportedModelError, p, "version");
    assert.equal(err.offset, 4);
  }
  // Unknown architecture (a real vocab-only GGUF of gpt2 / phi3).
  for (const f of ["test/fixtures/ggml-vocab/ggml-vocab-gpt-2.gguf", "test/fixtures/ggml-vocab/ggml-vocab-phi-3.gguf"]) {
    err = await expectError(() => loadGguf(f), UnsupportedModelError, f, "general.architecture");
    assert.match(err.message, /architecture/);
  }
  // Tensor data beyond the end of the file.
  const cutData = tmpFile();
  copyFileSync(STORIES, cutData);
  truncateSync(cutData, bytes.length - 100);
  const last = header.tensors.reduce((a, t) => (t.dataOffset > a.dataOffset ? t : a));
  err = await expectError(() => loadGguf(cutData), ModelFormatError, cutData, last.name);
  assert.match(err.message, /beyond the end of the file/);
});

test("model/metadata mismatches give typed errors naming the tensor or key", async () => {
  const write = (edit: (c: ReturnType<typeof tinyModel>) => void) => {
    const c = tinyModel();
    edit(c);
    const p = tmpFile();
    writeGguf(p, c);
    return p;
  };
  const retype = (c: ReturnType<typeof tinyModel>, name: string, shape: number[]) => {
    const t = c.tensors.find((x) => x.name === name)!;
    t.shape = shape;
    t.data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  };
  let p = write((c) => retype(c, "blk.1.attn_q.weight", [16, 32]));
  let err = await expectError(() => loadGguf(p), ModelFormatError, p, "blk.1.attn_q.weight");
  assert.match(err.message, /\[16, 32\].*expected \[32, 32\]/);
  p = write((c) => retype(c, "token_embd.weight", [259, 32]));
  await expectError(() => loadGguf(p), ModelFormatError, p, "token_embd.weight");
  p = write((c) => { c.tensors = c.tensors.filter((t) => t.name !== "blk.1.ffn_down.weight"); });
  err = await expectError(() => loadGguf(p), ModelFormatError, p, "blk.1.ffn_down.weight");
  assert.match(err.message, /missing/);
  p = write((c) => { delete c.metadata["llama.embedding_length"]; });
  await expectError(() => loadGguf(p), ModelFormatError, p, "llama.embedding_length");
  p = write((c) => { c.metadata["llama.attention.head_count"] = "eight"; });
  await expectError(() => loadGguf(p), ModelFormatError, p, "llama.attention.head_count");
  p = write((c) => { c.metadata["general.architecture"] = "falcon"; });
  await expectError(() => loadGguf(p), UnsupportedModelError, p, "general.architecture");
  p = write((c) => { c.metadata["tokenizer.ggml.eos_token_id"] = 999; });
  await expectError(() => loadGguf(p), ModelFormatError, p, "tokenizer.ggml.eos_token_id");

  // Tensor types: an F16 tensor relabelled I16 (same size, unsupported) and as an unknown type id.
  const base = write((c) => { c.tensors.find((t) => t.name === "blk.0.ffn_up.weight")!.dtype = "f16"; });
  const h = readGgufHeader(base);
  const entry = h.tensors.find((t) => t.name === "blk.0.ffn_up.weight")!;
  const typeAt = entry.entryOffset + 8 + Buffer.byteLength(entry.name) + 4 + 8 * entry.ne.length;
  const file = readFileSync(base);
  assert.equal(file.readUInt32LE(typeAt), 1);
  for (const [typeId, cls] of [[25, UnsupportedModelError], [99, ModelFormatError]] as const) {
    const q = tmpFile();
    const b = Buffer.from(file);
    b.writeUInt32LE(typeId, typeAt);
    writeFileSync(q, b);
    await expectError(() => loadGguf(q), cls, q, "blk.0.ffn_up.weight");
  }
});

test("loadModel dispatches on the path", async () => {
  const m = await loadModel(STORIES);
  assert.equal(m.spec.dim, 64);
  m.weights.close();
  const missing = join(tmp, "nope.gguf");
  await expectError(() => loadModel(missing), InvalidArgumentError, missing);
  const onnx = tmpFile("model.onnx");
  writeFileSync(onnx, "x");
  await expectError(() => loadModel(onnx), ModelFormatError, onnx); // not an ONNX ModelProto
  const dir = join(tmp, "empty-dir");
  mkdirSync(dir);
  await expectError(() => loadModel(dir), UnsupportedModelError, dir, "config.json");
  const noExt = tmpFile("model.bin");
  copyFileSync(STORIES, noExt);
  assert.equal((await loadModel(noExt)).spec.blocks, 5); // recognised by its magic
  const junk = tmpFile("junk.bin");
  writeFileSync(junk, "not a model");
  await expectError(() => loadModel(junk), ModelFormatError, junk);
});

test("llama3 rope scaling is recovered from the rope_freqs tensor", async () => {
  // Llama 3.1 8B's published rope_scaling: factor 8, low 1, high 4, original context 8192, theta 500000.
  const theta = 500000, headDim = 128, factor = 8, low = 1, high = 4, orig = 8192;
  const divisors = new Float32Array(headDim / 2); // [headDim/2], as llama.cpp's converter writes them
  for (let i = 0; i < divisors.length; i++) {
    const freq = theta ** (-(2 * i) / headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < orig / high) divisors[i] = 1;
    else if (wavelen > orig / low) divisors[i] = factor;
    else {
      const smooth = (orig / wavelen - low) / (high - low);
      divisors[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  for (const withOrigKey of [true, false]) {
    const c = randomModelContents({ architecture: "llama", blocks: 1, dim: 128, heads: 1, kvHeads: 1, ffnDim: 32, vocabSize: 260, dtype: "f32", seed: 3, ropeTheta: theta });
    c.tensors.push({ name: "rope_freqs.weight", shape: [headDim / 2], dtype: "f32", data: divisors });
    if (withOrigKey) c.metadata["llama.rope.scaling.original_context_length"] = orig;
    const p = tmpFile();
    writeGguf(p, c);
    const m = await loadGguf(p);
    const s = m.spec.ropeScaling!;
    assert.equal(s.type, "llama3");
    assert.equal(s.factor, 8);
    assert.equal(s.originalContextLength, orig); // 8192 is also the default when the key is absent
    assert.ok(Math.abs(s.lowFreqFactor - low) < 1e-3 && Math.abs(s.highFreqFactor - high) < 1e-3, JSON.stringify(s));
    m.weights.close();
  }
  // Divisors that no llama3 parameters produce are refused, not guessed.
  const c = randomModelContents({ architecture: "llama", blocks: 1, dim: 128, heads: 1, kvHeads: 1, ffnDim: 32, vocabSize: 260, dtype: "f32", seed: 3 });
  c.tensors.push({ name: "rope_freqs.weight", shape: [64], dtype: "f32", data: Float32Array.from({ length: 64 }, (_, i) => 1 + ((i * 7) % 5)) });
  const p = tmpFile();
  writeGguf(p, c);
  await expectError(() => loadGguf(p), UnsupportedModelError, p, "rope_freqs.weight");
});

test("onepass inspect prints the spec and a dtype histogram (text and --json)", () => {
  const path = tmpFile("q.gguf");
  writeRandomModel(path, { architecture: "qwen3", blocks: 2, dim: 64, heads: 4, kvHeads: 1, headDim: 32, ffnDim: 64, vocabSize: 300, dtype: "q8_0", seed: 4, tiedEmbeddings: true });
  const cli = (args: string[]) => spawnSync(process.execPath, ["dist/src/cli/main.js", "inspect", ...args], { encoding: "utf8" });
  const json = cli(["--model", path, "--json"]);
  assert.equal(json.status, 0, json.stderr);
  const s = JSON.parse(json.stdout);
  assert.equal(s.spec.architecture, "qwen3");
  assert.equal(s.spec.headDim, 32);
  assert.equal(s.spec.kvHeads, 1);
  assert.equal(s.spec.tiedEmbeddings, true);
  // 2-D weights: embedding + 7 per layer in q8_0; 1-D: output norm + 4 per layer in f32.
  assert.deepEqual(s.dtypes, { q8_0: 1 + 7 * 2, f32: 1 + 4 * 2 });
  assert.equal(s.parameters, 300 * 64 + 64 + 2 * (64 + 128 * 64 + 2 * 32 * 64 + 2 * 32 + 64 * 128 + 64 + 3 * 64 * 64));
  const text = cli(["--model", path]);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /architecture\s+qwen3/);
  assert.match(text.stdout, /heads \/ kv heads\s+4 \/ 1 \(GQA 4×\)/);
  assert.match(text.stdout, /q\/k norm\s+yes/);
  assert.match(text.stdout, /q8_0\s+15\s/);
  const def = cli([]);
  assert.equal(def.status, 0, def.stderr);
  assert.match(def.stdout, /stories260K\.gguf/);
  const bad = cli(["--model", join(tmp, "missing.gguf")]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /missing\.gguf/);
});
