/**
 * A bounded GGUF header parser. Every length and count read from the file is checked against the bytes that
 * remain before it is used, so a corrupted header can never cause an allocation larger than the file, a read
 * past its end, or a long loop: it fails with a ModelFormatError naming the file, field and byte offset.
 * (We parse the header ourselves rather than through @huggingface/gguf, whose errors are untyped and carry no
 * offset; the tests cross-check this parser against that library.)
 */
import { closeSync, fstatSync, readSync } from "node:fs";
import { ModelFormatError, OnepassError, UnsupportedModelError } from "../../errors.js";
import { openForReading } from "../file-read.js";
import { GGML_TYPES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, ValueType, alignUp, scalarSize, type GgmlType } from "./format.js";

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufScalar[] | GgufValue[];

export interface GgufMetadataEntry {
  /** Value type id (ValueType). */
  type: number;
  /** Element type id for arrays. */
  itemType?: number;
  /** Numbers for 8/16/32-bit ints and floats; bigint for 64-bit ints; arrays as JS arrays. */
  value: GgufValue;
  /** Byte offset of the entry's key in the file. */
  offset: number;
}

export interface GgufTensorEntry {
  name: string;
  /** ggml order, innermost first (ne0 = input features). */
  ne: number[];
  /** PyTorch order [out, in] (= ne reversed). */
  shape: number[];
  type: GgmlType;
  elements: number;
  byteSize: number;
  /** Absolute byte offset of the tensor data in the file. */
  dataOffset: number;
  /** Byte offset of this tensor's entry in the tensor table (for messages). */
  entryOffset: number;
}

export interface GgufHeader {
  path: string;
  version: number;
  fileSize: number;
  metadata: Map<string, GgufMetadataEntry>;
  tensors: GgufTensorEntry[];
  alignment: number;
  /** Absolute offset where the tensor data section starts. */
  dataStart: number;
}

const CHUNK = 1 << 20;
const MAX_ARRAY_DEPTH = 3;
const MAX_DIMS = 4; // GGML_MAX_DIMS

/** Sequential reader over a file descriptor with a bounded window buffer. */
class BoundedReader {
  pos = 0;
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  private readonly decoder = new TextDecoder("utf-8", { fatal: true });
  constructor(readonly fd: number, readonly size: number, readonly file: string) {}

  /** Make bytes [pos, pos+n) available; `what` names the field for the truncation error. */
  private need(n: number, what: string): number {
    if (n > this.size - this.pos) {
      throw new ModelFormatError(`file is truncated: ${what} needs ${n} bytes but only ${this.size - this.pos} remain`, { file: this.file, field: what, offset: this.pos });
    }
    const rel = this.pos - this.bufStart;
    if (rel >= 0 && rel + n <= this.buf.length) return rel;
    const len = Math.min(Math.max(n, CHUNK), this.size - this.pos);
    this.buf = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const r = readSync(this.fd, this.buf, got, len - got, this.pos + got);
      if (r === 0) throw new ModelFormatError("file is truncated (read returned no data)", { file: this.file, field: what, offset: this.pos + got });
      got += r;
    }
    this.bufStart = this.pos;
    return 0;
  }

  u32(what: string): number {
    const i = this.need(4, what);
    this.pos += 4;
    return this.buf.readUInt32LE(i);
  }
  u64(what: string): bigint {
    const i = this.need(8, what);
    this.pos += 8;
    return this.buf.readBigUInt64LE(i);
  }
  /** A u64 that must fit a safe integer and be at most `max`. */
  count(what: string, max: number): number {
    const at = this.pos;
    const v = this.u64(what);
    if (v > BigInt(max)) {
      throw new ModelFormatError(`${what} is ${v}, more than the rest of the file can hold (${max}): the file is truncated or corrupt`, { file: this.file, field: what, offset: at });
    }
    return Number(v);
  }
  string(what: string): string {
    const at = this.pos;
    const len = this.count(`${what} (string length)`, this.size - this.pos - 8);
    const i = this.need(len, what);
    this.pos += len;
    try {
      return this.decoder.decode(this.buf.subarray(i, i + len));
    } catch {
      throw new ModelFormatError(`${what} is not valid UTF-8`, { file: this.file, field: what, offset: at });
    }
  }
  scalar(type: number, what: string): GgufScalar {
    const size = scalarSize(type)!;
    const i = this.need(size, what);
    this.pos += size;
    const b = this.buf;
    switch (type) {
      case ValueType.U8: return b.readUInt8(i);
      case ValueType.I8: return b.readInt8(i);
      case ValueType.U16: return b.readUInt16LE(i);
      case ValueType.I16: return b.readInt16LE(i);
      case ValueType.U32: return b.readUInt32LE(i);
      case ValueType.I32: return b.readInt32LE(i);
      case ValueType.F32: return b.readFloatLE(i);
      case ValueType.Bool: {
        const v = b.readUInt8(i);
        if (v > 1) throw new ModelFormatError(`bool value is ${v}`, { file: this.file, field: what, offset: this.pos - 1 });
        return v === 1;
      }
      case ValueType.U64: return b.readBigUInt64LE(i);
      case ValueType.I64: return b.readBigInt64LE(i);
      case ValueType.F64: return b.readDoubleLE(i);
    }
    throw new Error("unreachable");
  }
  value(type: number, what: string, depth: number): { value: GgufValue; itemType?: number } {
    if (scalarSize(type) !== undefined) return { value: this.scalar(type, what) };
    if (type === ValueType.String) return { value: this.string(what) };
    if (type === ValueType.Array) {
      const typeAt = this.pos;
      const itemType = this.u32(`${what} (array type)`);
      if (itemType > ValueType.F64 || (itemType === ValueType.Array && depth >= MAX_ARRAY_DEPTH)) {
        throw new ModelFormatError(`unknown or too deeply nested array element type ${itemType}`, { file: this.file, field: what, offset: typeAt });
      }
      // Each element takes at least 1 byte (8 for a string's length, 12 for a nested array's header).
      const minSize = scalarSize(itemType) ?? (itemType === ValueType.String ? 8 : 12);
      const n = this.count(`${what} (array length)`, Math.floor((this.size - this.pos - 8) / minSize));
      const out: GgufValue[] = new Array(n);
      for (let k = 0; k < n; k++) out[k] = this.value(itemType, what, depth + 1).value;
      return { value: out as GgufValue, itemType };
    }
    throw new ModelFormatError(`unknown metadata value type ${type}`, { file: this.file, field: what, offset: this.pos - 4 });
  }
}

/** Parse the header (metadata + tensor table) of a GGUF file, validating every count, length and offset. */
export function readGgufHeader(path: string): GgufHeader {
  const fd = openForReading(path);
  try {
    const size = fstatSync(fd).size;
    return parseHeader(new BoundedReader(fd, size, path));
  } catch (err) {
    if (err instanceof OnepassError) throw err;
    throw new ModelFormatError(`cannot read GGUF header: ${(err as Error).message}`, { file: path }, { cause: err });
  } finally {
    closeSync(fd);
  }
}

function parseHeader(r: BoundedReader): GgufHeader {
  const file = r.file;
  const magic = r.u32("magic");
  if (magic !== GGUF_MAGIC) {
    throw new ModelFormatError(`not a GGUF file: magic is 0x${magic.toString(16).padStart(8, "0")}, expected "GGUF"`, { file, field: "magic", offset: 0 });
  }
  const version = r.u32("version");
  if (version !== 2 && version !== 3) {
    const hint = version === 1 ? " (GGUF v1 is obsolete)" : (version & 0xffff) === 0 ? " (big-endian GGUF is not supported)" : "";
    throw new UnsupportedModelError(`unsupported GGUF version ${version}${hint}; onepass reads v2 and v3`, { file, field: "version", offset: 4 });
  }
  // A tensor entry takes >= 8 (name) + 4 + 8 + 4 + 8 bytes; a metadata entry >= 8 + 4 + 1.
  const tensorCount = r.count("tensor_count", Math.floor((r.size - 24) / 32));
  const kvCount = r.count("metadata_kv_count", Math.floor((r.size - 24) / 13));

  const metadata = new Map<string, GgufMetadataEntry>();
  for (let k = 0; k < kvCount; k++) {
    const offset = r.pos;
    const key = r.string(`metadata key #${k}`);
    const typeAt = r.pos;
    const type = r.u32(key);
    if (type > ValueType.F64) {
      throw new ModelFormatError(`unknown metadata value type ${type}`, { file, field: key, offset: typeAt });
    }
    if (metadata.has(key)) throw new ModelFormatError("duplicate metadata key", { file, field: key, offset });
    const { value, itemType } = r.value(type, key, 0);
    metadata.set(key, { type, itemType, value, offset });
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const align = metadata.get("general.alignment");
  if (align !== undefined) {
    const a = align.value;
    if (typeof a !== "number" || !Number.isInteger(a) || a <= 0 || (a & (a - 1)) !== 0 || a > 1 << 20) {
      throw new ModelFormatError(`general.alignment must be a power of two (got ${String(a)})`, { file, field: "general.alignment", offset: align.offset });
    }
    alignment = a;
  }

  const raw: { name: string; ne: number[]; typeId: number; rel: bigint; entryOffset: number }[] = [];
  const names = new Set<string>();
  for (let t = 0; t < tensorCount; t++) {
    const entryOffset = r.pos;
    const name = r.string(`tensor #${t} name`);
    if (names.has(name)) throw new ModelFormatError("duplicate tensor name", { file, field: name, offset: entryOffset });
    names.add(name);
    const dimsAt = r.pos;
    const nDims = r.u32(`${name} n_dims`);
    if (nDims < 1 || nDims > MAX_DIMS) {
      throw new ModelFormatError(`tensor has ${nDims} dimensions (1..${MAX_DIMS} allowed)`, { file, field: name, offset: dimsAt });
    }
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) {
      const at = r.pos;
      const v = r.u64(`${name} ne[${d}]`);
      if (v < 1n || v > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new ModelFormatError(`dimension ${d} is ${v}`, { file, field: name, offset: at });
      }
      ne.push(Number(v));
    }
    const typeId = r.u32(`${name} type`);
    const rel = r.u64(`${name} offset`);
    raw.push({ name, ne, typeId, rel, entryOffset });
  }
  const dataStart = alignUp(r.pos, alignment);

  const tensors: GgufTensorEntry[] = [];
  for (const { name, ne, typeId, rel, entryOffset } of raw) {
    const type = GGML_TYPES.get(typeId);
    if (type === undefined) {
      throw new ModelFormatError(`unknown ggml tensor type ${typeId}`, { file, field: name, offset: entryOffset });
    }
    let elements = 1;
    for (const n of ne) elements *= n;
    if (ne[0]! % type.blockSize !== 0) {
      throw new ModelFormatError(`row length ${ne[0]} is not a multiple of the ${type.name} block size ${type.blockSize}`, { file, field: name, offset: entryOffset });
    }
    const byteSize = (elements / type.blockSize) * type.typeSize;
    const dataOffset = dataStart + Number(rel);
    if (rel > BigInt(r.size) || !Number.isSafeInteger(byteSize) || dataOffset + byteSize > r.size) {
      throw new ModelFormatError(
        `tensor data [${rel} + ${byteSize} bytes] lies beyond the end of the file (data section starts at ${dataStart}, file has ${r.size} bytes)`,
        { file, field: name, offset: entryOffset },
      );
    }
    if (Number(rel) % alignment !== 0) {
      throw new ModelFormatError(`tensor data offset ${rel} is not aligned to ${alignment}`, { file, field: name, offset: entryOffset });
    }
    tensors.push({ name, ne, shape: [...ne].reverse(), type, elements, byteSize, dataOffset, entryOffset });
  }
  return { path: file, version, fileSize: r.size, metadata, tensors, alignment, dataStart };
}
