/**
 * Protobuf fidelity of onnx-buf (ONNX 1.20 schema over @bufbuild/protobuf v2): decode → encode must give the
 * same bytes for our own graphs and for a model written here field by field in plain wire format (as protobuf
 * C++ writes it: field-number order, proto2 unpacked repeated scalars, explicit default values) using fields
 * added in recent ONNX releases. Also checks that surgery carries fields it does not know through untouched.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import "../src/util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { ModelProtoSchema, NodeProtoSchema, TensorProto_DataType } from "onnx-buf";
import { convertModel } from "../src/convert/index.js";
import { buildDecoderGraph } from "../src/graph/decoder.js";
import { addHiddenStateTaps, reencode } from "../src/graph/surgery.js";
import { loadGguf } from "../src/model/gguf/index.js";
import { STORIES260K, tempDir } from "./helpers.js";

// ---- a minimal protobuf wire writer (field numbers from onnx/onnx.proto)
type Bytes = number[];
function varint(n: number | bigint): Bytes {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: Bytes = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}
const vi = (field: number, n: number | bigint): Bytes => [...varint(field * 8), ...varint(n)];
const ld = (field: number, payload: Bytes): Bytes => [...varint(field * 8 + 2), ...varint(payload.length), ...payload];
const str = (field: number, s: string): Bytes => ld(field, [...Buffer.from(s, "utf8")]);
const f32 = (field: number, x: number): Bytes => {
  const b = Buffer.alloc(4);
  b.writeFloatLE(x);
  return [...varint(field * 8 + 5), ...b];
};
const kv = (field: number, k: string, v: string): Bytes => ld(field, [...str(1, k), ...str(2, v)]); // StringStringEntryProto

/** A ModelProto using recent fields, in the order protobuf C++ serializes them. */
function handMadeModel(unknownInNode: Bytes = []): Uint8Array {
  const attribute = [
    ...str(1, "alpha"), ...f32(2, 0.1), ...vi(3, 0), // explicit i = 0 (proto2 presence)
    ...vi(8, 3), ...vi(8, -2), // unpacked repeated int64 ints
    ...vi(20, 1), // type FLOAT
  ];
  const sharding = [...str(1, "x"), ...vi(2, 0), ...vi(2, 1), ...ld(4, [...vi(1, 0), ...ld(2, [...vi(1, 8), ...vi(3, 2)])])];
  const node = [
    ...str(1, "x"), ...str(2, "y"), ...str(3, "n0"), ...str(4, "LeakyRelu"), ...ld(5, attribute), ...str(6, "a node"),
    ...str(7, ""), ...str(8, "v2"), // domain, overload
    ...kv(9, "node_key", "node_value"), // metadata_props
    ...ld(10, [...str(1, "cfg"), ...ld(2, sharding), ...vi(3, 1)]), // device_configurations
    ...unknownInNode,
  ];
  const fp8 = [...vi(1, 2), ...vi(1, 2), ...vi(2, TensorProto_DataType.FLOAT8E4M3FN), ...str(8, "w8"), ...ld(9, [0x38, 0x40, 0xb8, 0x00]), ...kv(16, "t_key", "t_value")];
  const external = [
    ...vi(1, 1024), ...vi(2, 1), ...str(8, "big"),
    ...kv(13, "location", "model.onnx_data"), ...kv(13, "offset", "0"), ...kv(13, "length", "4096"),
    ...vi(14, 1), // data_location EXTERNAL
  ];
  const dim = (v: number | string, denotation?: string) =>
    ld(1, [...(typeof v === "number" ? vi(1, v) : str(2, v)), ...(denotation ? str(3, denotation) : [])]);
  const tensorType = (elem: number) => ld(1, [...vi(1, elem), ...ld(2, [...dim("batch", "DATA_BATCH"), ...dim(4)])]);
  const input = [...str(1, "x"), ...ld(2, [...tensorType(1), ...str(6, "TENSOR")]), ...str(3, "input doc"), ...kv(4, "vi_key", "vi_value")];
  const output = [...str(1, "y"), ...ld(2, tensorType(1))];
  const graph = [
    ...ld(1, node), ...str(2, "g"), ...ld(5, fp8), ...ld(5, external), ...str(10, "graph doc"),
    ...ld(11, input), ...ld(12, output), ...ld(13, [...str(1, "y"), ...ld(2, tensorType(1))]), ...kv(16, "g_key", "g_value"),
  ];
  const fnNode = [...str(1, "a"), ...str(2, "b"), ...str(4, "Relu")];
  const fn = [
    ...str(1, "MyFn"), ...str(4, "a"), ...str(5, "b"), ...str(6, "beta"), ...ld(7, fnNode), ...str(8, "fn doc"),
    ...ld(9, [...str(1, ""), ...vi(2, 23)]), ...str(10, "custom.domain"), ...ld(11, [...str(1, "gamma"), ...vi(3, 7), ...vi(20, 2)]),
    ...ld(12, [...str(1, "a"), ...ld(2, tensorType(1))]), ...str(13, "ov"), ...kv(14, "f_key", "f_value"),
  ];
  return Uint8Array.from([
    ...vi(1, 11), ...str(2, "hand"), ...str(3, "1.0"), ...str(4, "ai.test"), ...vi(5, 0), ...str(6, "model doc ✓"),
    ...ld(7, graph),
    ...ld(8, [...str(1, ""), ...vi(2, 23)]), ...ld(8, [...str(1, "com.microsoft"), ...vi(2, 1)]), ...ld(8, [...str(1, "custom.domain"), ...vi(2, 1)]),
    ...kv(14, "m_key", "m_value"),
    ...ld(25, fn),
    ...ld(26, [...str(1, "cfg"), ...vi(2, 2), ...str(3, "cpu:0"), ...str(3, "cpu:1")]),
  ]);
}

test("onnx-buf decode → encode is byte-identical for a hand-made model with recent fields", () => {
  const bytes = handMadeModel();
  const again = reencode(ModelProtoSchema, bytes);
  assert.deepEqual(Buffer.from(again), Buffer.from(bytes));
  // The fields were really understood (not just carried as unknown bytes).
  const m = fromBinary(ModelProtoSchema, bytes);
  assert.equal(m.functions[0].overload, "ov");
  assert.equal(m.configuration[0].device.length, 2);
  assert.equal(m.graph?.node[0].deviceConfigurations[0].shardingSpec[0].shardedDim[0].simpleSharding[0].numShards, 2n);
  assert.equal(m.graph?.initializer[0].dataType, TensorProto_DataType.FLOAT8E4M3FN);
  assert.equal(m.graph?.node[0].attribute[0].i, 0n);
  assert.deepEqual(m.graph?.node[0].attribute[0].ints, [3n, -2n]);
});

test("onnx-buf keeps unknown fields: byte-identical when they end a message, moved to its end otherwise", () => {
  const unknown = [...str(99, "from the future"), ...vi(100, 5)];
  const withUnknown = handMadeModel(unknown);
  assert.deepEqual(Buffer.from(reencode(ModelProtoSchema, withUnknown)), Buffer.from(withUnknown));
  // An unknown field in the middle of a NodeProto comes back after the known ones.
  const node = [...str(1, "x"), ...unknown, ...str(2, "y"), ...str(4, "Relu")];
  const canonical = [...str(1, "x"), ...str(2, "y"), ...str(4, "Relu"), ...unknown];
  assert.deepEqual(Buffer.from(reencode(NodeProtoSchema, Uint8Array.from(node))), Buffer.from(canonical));
});

test("onnx-buf decode → encode is byte-identical for our own decoder graphs (with and without taps)", async () => {
  const dir = tempDir("fidelity");
  try {
    const model = await loadGguf(STORIES260K);
    for (const taps of [false, true]) {
      const path = join(dir, `m${taps}.onnx`);
      buildDecoderGraph(model.spec, model.weights, path, { taps, int4: false });
      const bytes = readFileSync(path);
      assert.deepEqual(Buffer.from(reencode(ModelProtoSchema, bytes)), bytes);
    }
    model.weights.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("onnx-buf decode → encode is byte-identical for `onepass convert --to onnx` folders (f32 and int4 MatMulNBits, external data)", async () => {
  const dir = tempDir("fidelity");
  try {
    for (const quantize of [undefined, "int4"] as const) {
      const out = join(dir, quantize ?? "f32");
      await convertModel(STORIES260K, { to: "onnx", out, quantize });
      const bytes = readFileSync(join(out, "model.onnx"));
      const m = fromBinary(ModelProtoSchema, bytes);
      assert.equal(m.graph?.node.some((n) => n.opType === "MatMulNBits"), quantize === "int4");
      assert.ok(m.graph?.initializer.some((t) => t.dataLocation === 1), "external data references"); // EXTERNAL
      assert.deepEqual(Buffer.from(reencode(ModelProtoSchema, bytes)), bytes);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("surgery carries metadata, doc strings and unknown top-level fields through byte for byte, and ORT still runs it", async () => {
  const dir = tempDir("fidelity");
  try {
    const model = await loadGguf(STORIES260K);
    const path = join(dir, "model.onnx");
    buildDecoderGraph(model.spec, model.weights, path, { taps: false, int4: false });
    model.weights.close();
    const extra = [...str(6, "doc from the exporter"), ...kv(14, "onnx_web_runtime", "x"), ...str(99, "unknown to ONNX 1.20")];
    const original = Uint8Array.from([...readFileSync(path), ...extra]);
    const { bytes } = addHiddenStateTaps(original, { blocks: model.spec.blocks });
    assert.deepEqual(Buffer.from(bytes.subarray(bytes.length - extra.length)), Buffer.from(extra));
    const m = fromBinary(ModelProtoSchema, bytes);
    assert.equal(m.docString, "doc from the exporter");
    assert.equal(m.metadataProps[0].value, "x");
    assert.equal(m.graph?.output.at(-1)?.name, "hidden_states");
    const tappedPath = join(dir, "model.taps.onnx"); // next to model.onnx.data
    writeFileSync(tappedPath, bytes);
    const session = await ort.InferenceSession.create(tappedPath);
    assert.ok(session.outputNames.includes("hidden_states"));
    await session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
