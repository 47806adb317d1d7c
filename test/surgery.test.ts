/**
 * Graph surgery on decoder exports built WITHOUT taps (by our own builder, Optimum layout: onnx/model.onnx +
 * model.onnx.data): after surgery, ORT must give the same hidden states and logits as the graph built directly
 * with taps. Graphs without a recognisable residual chain must fail with GraphError.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import "../src/util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { GraphError } from "../src/errors.js";
import { buildDecoderGraph } from "../src/graph/decoder.js";
import { OnnxModelBuilder } from "../src/onnx/proto.js";
import { addHiddenStateTaps, tapOnnxFile } from "../src/graph/surgery.js";
import { loadGguf } from "../src/model/gguf/index.js";
import { writeRandomModel } from "../src/model/gguf/writer.js";
import type { ModelSpec } from "../src/model/spec.js";
import { STORIES260K, maxAbsDiff, tempDir } from "./helpers.js";

const STORIES = STORIES260K;

/** Feeds for our builder's graph: one run of `tokens` after `past` cached positions. */
function decoderFeeds(spec: ModelSpec, tokens: number[], pastLen: number, past?: Record<string, ort.Tensor>): Record<string, ort.Tensor> {
  const T = tokens.length;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor("int64", BigInt64Array.from(tokens.map(BigInt)), [1, T]), // [1, T]
    attention_mask: new ort.Tensor("int64", new BigInt64Array(pastLen + T).fill(1n), [1, pastLen + T]), // [1, past+T]
    position_ids: new ort.Tensor("int64", BigInt64Array.from({ length: T }, (_, i) => BigInt(pastLen + i)), [1, T]), // [1, T]
    logits_positions: new ort.Tensor("int64", BigInt64Array.from({ length: T }, (_, i) => BigInt(i)), [T]), // [T]
  };
  for (let i = 0; i < spec.blocks; i++) {
    for (const kind of ["key", "value"] as const) {
      feeds[`past_key_values.${i}.${kind}`] =
        past?.[`present.${i}.${kind}`] ?? new ort.Tensor("float32", new Float32Array(0), [1, spec.kvHeads, 0, spec.headDim]); // [1, kvH, past, hd]
    }
  }
  return feeds;
}

/** Builds `gguf` without and with taps, taps the former by surgery, and compares the two in ORT. */
async function compareSurgeryWithBuiltTaps(gguf: string, prompt: number[], next: number): Promise<void> {
  const dir = tempDir("surgery");
  try {
    const model = await loadGguf(gguf);
    const { spec, weights } = model;
    mkdirSync(join(dir, "plain", "onnx"), { recursive: true });
    mkdirSync(join(dir, "tapped"), { recursive: true });
    const plainPath = join(dir, "plain", "onnx", "model.onnx"); // weights in model.onnx.data (Optimum layout)
    const refPath = join(dir, "tapped", "model.onnx");
    buildDecoderGraph(spec, weights, plainPath, { taps: false, int4: false });
    buildDecoderGraph(spec, weights, refPath, { taps: true, int4: false });
    weights.close();

    const tapped = tapOnnxFile(plainPath, undefined, { blocks: spec.blocks, dim: spec.dim });
    assert.equal(tapped.stream.blocks, spec.blocks);
    assert.equal(tapped.stream.taps.length, spec.blocks + 1);
    assert.equal(tapped.stream.finalNorm, "skip-simplified-layer-norm");

    const surg = await ort.InferenceSession.create(tapped.path);
    const ref = await ort.InferenceSession.create(refPath);
    assert.ok(surg.outputNames.includes("hidden_states"));

    const a = await surg.run(decoderFeeds(spec, prompt, 0));
    const b = await ref.run(decoderFeeds(spec, prompt, 0));
    assert.deepEqual(a.hidden_states.dims, [spec.blocks + 1, 1, prompt.length, spec.dim]);
    assert.deepEqual(a.hidden_states.dims, b.hidden_states.dims);
    assert.ok(maxAbsDiff(a.hidden_states.data as Float32Array, b.hidden_states.data as Float32Array) <= 1e-5);
    assert.ok(maxAbsDiff(a.logits.data as Float32Array, b.logits.data as Float32Array) <= 1e-5);
    // The taps are not trivially equal: consecutive layers differ.
    const h = a.hidden_states.data as Float32Array;
    const n = prompt.length * spec.dim;
    for (let l = 0; l < spec.blocks; l++) assert.ok(maxAbsDiff(h.subarray(l * n, (l + 1) * n), h.subarray((l + 1) * n, (l + 2) * n)) > 1e-4);

    // One decode step on the KV cache each session produced.
    const a2 = await surg.run(decoderFeeds(spec, [next], prompt.length, a as Record<string, ort.Tensor>));
    const b2 = await ref.run(decoderFeeds(spec, [next], prompt.length, b as Record<string, ort.Tensor>));
    assert.deepEqual(a2.hidden_states.dims, [spec.blocks + 1, 1, 1, spec.dim]);
    assert.ok(maxAbsDiff(a2.hidden_states.data as Float32Array, b2.hidden_states.data as Float32Array) <= 1e-5);
    assert.ok(maxAbsDiff(a2.logits.data as Float32Array, b2.logits.data as Float32Array) <= 1e-5);
    await surg.release();
    await ref.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("surgery on an untapped stories260K export matches the graph built with taps (prefill and a decode step)", async () => {
  await compareSurgeryWithBuiltTaps(STORIES, [1, 403, 407, 261, 378, 429, 414], 444);
});

test("surgery on an untapped random qwen2 export (q/k/v bias Adds, fused-rotary GQA) matches the graph built with taps", async () => {
  const dir = tempDir("surgery-qwen2");
  try {
    const gguf = join(dir, "qwen2.gguf");
    writeRandomModel(gguf, { architecture: "qwen2", blocks: 3, dim: 64, heads: 4, kvHeads: 2, ffnDim: 96, vocabSize: 320, dtype: "f32", seed: 11, weightStd: 0.1 });
    await compareSurgeryWithBuiltTaps(gguf, [1, 17, 250, 3, 99], 42);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("surgery leaves every byte outside the graph field as it was and keeps the original graph bytes", async () => {
  const dir = tempDir("surgery");
  try {
    const model = await loadGguf(STORIES);
    const path = join(dir, "model.onnx");
    buildDecoderGraph(model.spec, model.weights, path, { taps: false, int4: false });
    model.weights.close();
    const original = readFileSync(path);
    const { bytes } = addHiddenStateTaps(original, { blocks: model.spec.blocks });
    // Locate the graph field (7, wire type 2) in the original: tag 0x3a, then its varint length.
    const g = findField(original, 7);
    const gNew = findField(bytes, 7);
    assert.deepEqual(Buffer.from(bytes.subarray(0, gNew.tagStart)), original.subarray(0, g.tagStart));
    assert.deepEqual(Buffer.from(bytes.subarray(gNew.dataStart, gNew.dataStart + (g.dataEnd - g.dataStart))), original.subarray(g.dataStart, g.dataEnd));
    assert.deepEqual(Buffer.from(bytes.subarray(gNew.dataEnd)), original.subarray(g.dataEnd));
    assert.ok(gNew.dataEnd - gNew.dataStart > g.dataEnd - g.dataStart);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("surgery refuses a wrong layer count, an existing hidden_states output and a second tap", async () => {
  const dir = tempDir("surgery");
  try {
    const model = await loadGguf(STORIES);
    const plain = join(dir, "plain.onnx");
    const withTaps = join(dir, "taps.onnx");
    buildDecoderGraph(model.spec, model.weights, plain, { taps: false, int4: false });
    buildDecoderGraph(model.spec, model.weights, withTaps, { taps: true, int4: false });
    model.weights.close();
    assert.throws(
      () => addHiddenStateTaps(readFileSync(plain), { file: plain, blocks: model.spec.blocks + 1 }),
      (e: unknown) => e instanceof GraphError && e.file === plain && e.field === "num_hidden_layers" && /found 5 decoder blocks/.test(e.message),
    );
    assert.throws(() => addHiddenStateTaps(readFileSync(withTaps), { file: withTaps }), (e: unknown) => e instanceof GraphError && e.field === "hidden_states");
    assert.throws(() => addHiddenStateTaps(Uint8Array.from([0x3a, 0x05, 1]), { file: "junk.onnx" }), (e: unknown) => e instanceof GraphError && e.file === "junk.onnx");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a graph without a residual chain or without input_ids fails with a GraphError naming the file", () => {
  const dir = tempDir("surgery");
  try {
    // Embedding → MatMul → logits: no residual Add anywhere.
    const noChain = join(dir, "nochain.onnx");
    const b = new OnnxModelBuilder(noChain);
    const ids = b.input("input_ids", "int64", [1, "T"]); // [1, T]
    const emb = b.op("Gather", [b.constF32(Array.from({ length: 32 }, (_, i) => i / 32), [8, 4]), ids], { axis: 0 }); // [1, T, 4]
    b.node("MatMul", [emb, b.constF32(Array.from({ length: 32 }, (_, i) => i / 10), [4, 8])], ["logits"]); // [1, T, 8]
    b.output("logits", "float32", [1, "T", 8]);
    b.finish();
    assert.throws(
      () => addHiddenStateTaps(readFileSync(noChain), { file: noChain }),
      (e: unknown) => e instanceof GraphError && e.file === noChain && /no residual Add/.test(e.message),
    );

    const noIds = join(dir, "noids.onnx");
    const c = new OnnxModelBuilder(noIds);
    const x = c.input("tokens", "int64", [1, "T"]); // [1, T]
    c.node("Identity", [x], ["out"]); // [1, T]
    c.output("out", "int64", [1, "T"]);
    c.finish();
    assert.throws(
      () => addHiddenStateTaps(readFileSync(noIds), { file: noIds }),
      (e: unknown) => e instanceof GraphError && e.file === noIds && /input_ids/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Top-level length-delimited field `field` of a protobuf message (last occurrence), by plain wire parsing. */
function findField(buf: Uint8Array, field: number): { tagStart: number; dataStart: number; dataEnd: number } {
  const varint = (p: number): [number, number] => {
    let v = 0;
    let s = 1;
    for (;;) {
      const x = buf[p++];
      v += (x & 0x7f) * s;
      if (x < 0x80) return [v, p];
      s *= 128;
    }
  };
  let pos = 0;
  let found: { tagStart: number; dataStart: number; dataEnd: number } | undefined;
  while (pos < buf.length) {
    const tagStart = pos;
    const [key, p1] = varint(pos);
    pos = p1;
    const wire = key & 7;
    if (wire === 0) pos = varint(pos)[1];
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else {
      const [len, p2] = varint(pos);
      pos = p2 + len;
      if (key >>> 3 === field) found = { tagStart, dataStart: p2, dataEnd: pos };
    }
  }
  assert.ok(found !== undefined);
  return found;
}
