import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ModelFormatError } from "../src/errors.js";
import { openSafetensors, writeSafetensors } from "../src/model/safetensors.js";
import { f32ToF16 } from "../src/numeric/half.js";
import { tempDir } from "./helpers.js";

const tmp = () => tempDir("st");

/** A safetensors file built byte by byte from the format description (8-byte LE length, JSON, data). */
function handMadeFile(path: string, headerJson: string, data: Uint8Array, lengthOverride?: bigint): void {
  const header = Buffer.from(headerJson, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(header.length));
  writeFileSync(path, Buffer.concat([len, header, data]));
}

// f16/bf16 conversions are tested in half.test.ts.

test("reads a hand-built file: metadata, F32/F16/BF16 values, raw bytes", () => {
  const dir = tmp();
  try {
    const path = join(dir, "hand.safetensors");
    // a: F32 [2] = [1.5, -2]; b: F16 [2] = [1, 65504]; c: BF16 [1,2] = [1, 3.140625]; d: I32 [1] = [7]
    const data = Buffer.alloc(8 + 4 + 4 + 4);
    data.writeFloatLE(1.5, 0);
    data.writeFloatLE(-2, 4);
    data.writeUInt16LE(0x3c00, 8);
    data.writeUInt16LE(0x7bff, 10);
    data.writeUInt16LE(0x3f80, 12);
    data.writeUInt16LE(0x4049, 14);
    data.writeInt32LE(7, 16);
    const header = JSON.stringify({
      __metadata__: { format: "pt" },
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F16", shape: [2], data_offsets: [8, 12] },
      c: { dtype: "BF16", shape: [1, 2], data_offsets: [12, 16] },
      d: { dtype: "I32", shape: [1], data_offsets: [16, 20] },
    });
    handMadeFile(path, header, data);
    const st = openSafetensors(path);
    try {
      assert.deepEqual(st.metadata, { format: "pt" });
      assert.deepEqual(st.tensors.map((t) => [t.name, t.dtype, t.shape]), [["a", "F32", [2]], ["b", "F16", [2]], ["c", "BF16", [1, 2]], ["d", "I32", [1]]]);
      assert.deepEqual(Array.from(st.read("a")), [1.5, -2]);
      assert.deepEqual(Array.from(st.read("b")), [1, 65504]);
      assert.deepEqual(Array.from(st.read("c")), [1, 3.140625]);
      assert.equal(Buffer.from(st.readBytes("d")).readInt32LE(0), 7);
      assert.throws(() => st.read("d"), ModelFormatError);
      assert.throws(() => st.read("nope"), (e: unknown) => e instanceof ModelFormatError && e.field === "nope");
    } finally {
      st.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("writeSafetensors: layout per the format, values round-trip, lazy data, atomic (no temp left)", () => {
  const dir = tmp();
  try {
    const path = join(dir, "w.safetensors");
    const w = new Float32Array([0.1, -3.25, 1e-3, 7, 65504, -0.5]); // [2, 3]
    let produced = false;
    writeSafetensors(path, {
      w32: { shape: [2, 3], data: w },
      w16: { shape: [2, 3], dtype: "F16", data: w },
      wbf: { shape: [3, 2], dtype: "BF16", data: () => ((produced = true), w) },
      raw: { shape: [2], dtype: "U8", data: new Uint8Array([9, 250]) },
    }, { format: "pt", note: "x" });
    assert.ok(produced);
    assert.deepEqual(readdirSync(dir), ["w.safetensors"]);
    // Parse the bytes independently of the reader.
    const bytes = readFileSync(path);
    const n = Number(bytes.readBigUInt64LE(0));
    assert.equal(n % 8, 0, "header padded to 8 bytes");
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
    assert.deepEqual(header.__metadata__, { format: "pt", note: "x" });
    assert.deepEqual(header.w32, { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] });
    assert.deepEqual(header.w16.data_offsets, [24, 36]);
    assert.equal(bytes.readFloatLE(8 + n + 4), -3.25);
    assert.equal(bytes.readUInt16LE(8 + n + 24), f32ToF16(0.1));
    assert.equal(bytes.length, 8 + n + 24 + 12 + 12 + 2);

    const st = openSafetensors(path);
    try {
      assert.deepEqual(Array.from(st.read("w32")), Array.from(w));
      const h = st.read("w16");
      const b = st.read("wbf");
      for (let i = 0; i < w.length; i++) {
        assert.ok(Math.abs(h[i] - w[i]) <= Math.abs(w[i]) * 2 ** -11, `f16 ${i}`);
        assert.ok(Math.abs(b[i] - w[i]) <= Math.abs(w[i]) * 2 ** -8, `bf16 ${i}`);
      }
      assert.deepEqual(Array.from(st.readBytes("raw")), [9, 250]);
    } finally {
      st.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("bad files give ModelFormatError naming file, field and offset", () => {
  const dir = tmp();
  try {
    const path = join(dir, "bad.safetensors");
    const header = JSON.stringify({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } });
    // header length beyond the file
    handMadeFile(path, header, new Uint8Array(8), 1_000_000n);
    assert.throws(() => openSafetensors(path), (e: unknown) =>
      e instanceof ModelFormatError && e.file === path && e.field === "header length" && e.offset === 0 && /beyond the file/.test(e.message));
    // data beyond the file
    handMadeFile(path, header, new Uint8Array(4));
    assert.throws(() => openSafetensors(path), (e: unknown) => e instanceof ModelFormatError && e.field === "a.data_offsets");
    // offsets disagree with dtype × shape
    handMadeFile(path, JSON.stringify({ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }), new Uint8Array(8));
    assert.throws(() => openSafetensors(path), (e: unknown) => e instanceof ModelFormatError && e.field === "a.data_offsets");
    // overlapping tensors
    handMadeFile(path, JSON.stringify({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }), new Uint8Array(8));
    assert.throws(() => openSafetensors(path), (e: unknown) => e instanceof ModelFormatError && e.field === "b.data_offsets" && /overlaps/.test(e.message));
    // unknown dtype, bad JSON, truncated length
    handMadeFile(path, JSON.stringify({ a: { dtype: "Q4", shape: [2], data_offsets: [0, 1] } }), new Uint8Array(1));
    assert.throws(() => openSafetensors(path), (e: unknown) => e instanceof ModelFormatError && e.field === "a.dtype");
    handMadeFile(path, "{not json", new Uint8Array(0));
    assert.throws(() => openSafetensors(path), (e: unknown) => e instanceof ModelFormatError && e.field === "header");
    writeFileSync(path, Buffer.alloc(5));
    assert.throws(() => openSafetensors(path), (e: unknown) => e instanceof ModelFormatError && e.offset === 0);
    assert.throws(() => openSafetensors(join(dir, "missing.safetensors")), (e: unknown) => e instanceof ModelFormatError && /ENOENT/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
