/**
 * Safetensors files: a lazy reader and an atomic writer.
 *
 * Format (https://huggingface.co/docs/safetensors): 8-byte little-endian u64 header length N, N bytes of
 * JSON `{ "__metadata__"?: {string: string}, "<name>": { dtype, shape, data_offsets: [begin, end] } }`, then
 * the tensor bytes; offsets are relative to the first byte after the header. Little-endian, row-major.
 *
 * Reading:
 * ```ts
 * const st = openSafetensors("model.safetensors");   // parses only the header
 * st.tensors;                 // [{ name, dtype: "BF16", shape: [896, 896], offset, byteLength }, ...]
 * const w = st.read("w");     // Float32Array (F32/F16/BF16 converted), one fs.readSync of that tensor only
 * const raw = st.readBytes("ids"); // raw little-endian bytes for any dtype
 * st.close();
 * ```
 * Writing (temp file + rename, tensors streamed one by one, so lazy producers keep memory low):
 * ```ts
 * writeSafetensors("probe.safetensors", {
 *   weight: { shape: [4, 8], data: new Float32Array(32) },           // stored F32
 *   emb: { shape: [10, 8], dtype: "BF16", data: () => makeEmb() },    // converted to BF16 at write time
 *   ids: { shape: [3], dtype: "I32", data: new Uint8Array(12) },      // raw bytes for other dtypes
 * }, { format: "pt" });
 * ```
 */
import { closeSync, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { ModelFormatError, InvalidArgumentError, OnepassError } from "../errors.js";
import { bytesToFloats, floatsToBytes, type FloatStorage } from "../numeric/half.js";
import { openForReading, readExactly } from "./file-read.js";

/** Bytes per element of the safetensors dtypes. */
const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};

/** The float dtypes `read()` converts to Float32Array (and Float32Array data is written as), by safetensors name. */
export const SAFETENSORS_FLOAT_STORAGE: Readonly<Partial<Record<string, FloatStorage>>> = { F32: "f32", F16: "f16", BF16: "bf16" };

export interface SafetensorsTensorInfo {
  name: string;
  /** Safetensors dtype string, e.g. "BF16". */
  dtype: string;
  shape: number[];
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
  byteLength: number;
}

export interface SafetensorsFile {
  readonly path: string;
  /** The `__metadata__` map (string → string), {} when absent. */
  readonly metadata: Record<string, string>;
  /** Tensors in file order. */
  readonly tensors: SafetensorsTensorInfo[];
  has(name: string): boolean;
  info(name: string): SafetensorsTensorInfo;
  /** Float32 copy of an F32/F16/BF16 tensor. */
  read(name: string): Float32Array;
  /** Raw little-endian bytes of any tensor (a fresh buffer). */
  readBytes(name: string): Uint8Array;
  close(): void;
}

/** Largest header we accept (the reference implementation's limit is 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

/** Opens a safetensors file and parses its header; tensor data is read only on request. */
export function openSafetensors(path: string): SafetensorsFile {
  const fd = openForReading(path);
  try {
    return parseSafetensors(path, fd);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

function parseSafetensors(path: string, fd: number): SafetensorsFile {
  const fileSize = statSync(path).size;
  if (fileSize < 8) throw new ModelFormatError(`file is ${fileSize} bytes, too short for a safetensors header`, { file: path, field: "header length", offset: 0 });
  const lenBytes = readExactly(fd, path, 0, 8, "header length");
  const headerLen = Number(new DataView(lenBytes.buffer).getBigUint64(0, true));
  if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > fileSize) {
    throw new ModelFormatError(`header length ${headerLen} goes beyond the file (${fileSize} bytes)`, { file: path, field: "header length", offset: 0 });
  }
  const headerText = new TextDecoder("utf-8", { fatal: false }).decode(readExactly(fd, path, 8, headerLen, "header"));
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (err) {
    throw new ModelFormatError(`header is not valid JSON: ${(err as Error).message}`, { file: path, field: "header", offset: 8 }, { cause: err });
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new ModelFormatError("header is not a JSON object", { file: path, field: "header", offset: 8 });
  }
  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (entry !== null && typeof entry === "object") {
        for (const [k, v] of Object.entries(entry as Record<string, unknown>)) if (typeof v === "string") metadata[k] = v;
      }
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (e === null || typeof e !== "object") throw new ModelFormatError("tensor entry is not an object", { file: path, field: name, offset: 8 });
    if (typeof e.dtype !== "string" || !(e.dtype in DTYPE_BYTES)) {
      throw new ModelFormatError(`unknown dtype ${JSON.stringify(e.dtype)}`, { file: path, field: `${name}.dtype`, offset: 8 });
    }
    if (!Array.isArray(e.shape) || !e.shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
      throw new ModelFormatError(`bad shape ${JSON.stringify(e.shape)}`, { file: path, field: `${name}.shape`, offset: 8 });
    }
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[1] < offs[0]) {
      throw new ModelFormatError(`bad data_offsets ${JSON.stringify(offs)}`, { file: path, field: `${name}.data_offsets`, offset: 8 });
    }
    const shape = e.shape as number[];
    const numel = shape.reduce((a, b) => a * b, 1);
    const byteLength = offs[1] - offs[0];
    if (byteLength !== numel * DTYPE_BYTES[e.dtype]) {
      throw new ModelFormatError(`data_offsets span ${byteLength} bytes but ${e.dtype}${JSON.stringify(shape)} needs ${numel * DTYPE_BYTES[e.dtype]}`, { file: path, field: `${name}.data_offsets`, offset: 8 });
    }
    if (offs[1] > dataSize) {
      throw new ModelFormatError(`tensor data ends at ${dataStart + offs[1]}, beyond the file (${fileSize} bytes)`, { file: path, field: `${name}.data_offsets`, offset: dataStart + offs[0] });
    }
    tensors.push({ name, dtype: e.dtype, shape: shape.slice(), offset: dataStart + offs[0], byteLength });
  }
  // Tensor byte ranges must not overlap (the reference implementation rejects such files too).
  const sorted = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].offset < sorted[i - 1].offset + sorted[i - 1].byteLength) {
      throw new ModelFormatError(`data overlaps tensor ${sorted[i - 1].name}`, { file: path, field: `${sorted[i].name}.data_offsets`, offset: sorted[i].offset });
    }
  }
  const byName = new Map(tensors.map((t) => [t.name, t]));
  let open = true;

  const info = (name: string): SafetensorsTensorInfo => {
    const t = byName.get(name);
    if (t === undefined) throw new ModelFormatError("no such tensor", { file: path, field: name });
    return t;
  };
  const readBytes = (name: string): Uint8Array => {
    const t = info(name);
    if (!open) throw new OnepassError("safetensors file is closed", { file: path, field: name });
    return readExactly(fd, path, t.offset, t.byteLength, name);
  };
  return {
    path,
    metadata,
    tensors,
    has: (name) => byName.has(name),
    info,
    readBytes,
    read(name) {
      const storage = SAFETENSORS_FLOAT_STORAGE[info(name).dtype];
      if (storage === undefined) {
        throw new ModelFormatError(`dtype ${info(name).dtype} cannot be read as float32 (use readBytes)`, { file: path, field: `${name}.dtype` });
      }
      return bytesToFloats(readBytes(name), storage);
    },
    close() {
      if (open) {
        open = false;
        closeSync(fd);
      }
    },
  };
}

// ---- writer -------------------------------------------------------------------------------------------------

export interface SafetensorsTensorInput {
  shape: number[];
  /** Stored dtype; default "F32". Float32Array data is converted to F32/F16/BF16; Uint8Array is written as is. */
  dtype?: string;
  /** The values, or a function producing them when the writer reaches this tensor (keeps memory low). */
  data: Float32Array | Uint8Array | (() => Float32Array | Uint8Array);
}

/**
 * Writes tensors (in the given order) to `path` atomically: a temp file next to it, fsync, then rename.
 * The header is padded with spaces so tensor data starts 8-byte aligned.
 */
export function writeSafetensors(path: string, tensors: Record<string, SafetensorsTensorInput>, metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const order = Object.keys(tensors);
  let offset = 0;
  const sizes: number[] = [];
  for (const name of order) {
    if (name === "__metadata__") throw new InvalidArgumentError("tensor name __metadata__ is reserved", { file: path, field: name });
    const t = tensors[name];
    const dtype = t.dtype ?? "F32";
    if (!(dtype in DTYPE_BYTES)) throw new InvalidArgumentError(`unknown safetensors dtype ${dtype}`, { file: path, field: `${name}.dtype` });
    if (!t.shape.every((s) => Number.isSafeInteger(s) && s >= 0)) throw new InvalidArgumentError(`bad shape ${JSON.stringify(t.shape)}`, { file: path, field: `${name}.shape` });
    const size = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    sizes.push(size);
    offset += size;
  }
  let headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(headerBytes.length / 8) * 8;
  if (padded !== headerBytes.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(headerBytes);
    headerBytes = p;
  }
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fd = openSync(tmp, "w");
  let closed = false;
  try {
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
    writeAll(fd, len);
    writeAll(fd, headerBytes);
    order.forEach((name, i) => {
      const t = tensors[name];
      const dtype = t.dtype ?? "F32";
      const values = typeof t.data === "function" ? t.data() : t.data;
      let bytes: Uint8Array;
      if (values instanceof Float32Array) {
        const storage = SAFETENSORS_FLOAT_STORAGE[dtype];
        if (storage === undefined) {
          throw new InvalidArgumentError(`Float32Array data can be stored as F32/F16/BF16, not ${dtype}`, { file: path, field: `${name}.dtype` });
        }
        bytes = floatsToBytes(values, storage);
      } else {
        bytes = values;
      }
      if (bytes.byteLength !== sizes[i]) {
        throw new InvalidArgumentError(`data has ${bytes.byteLength} bytes, ${dtype}${JSON.stringify(t.shape)} needs ${sizes[i]}`, { file: path, field: name });
      }
      writeAll(fd, bytes);
    });
    fsyncSync(fd);
    closed = true;
    closeSync(fd);
  } catch (err) {
    if (!closed) closeSync(fd);
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw err;
  }
  renameSync(tmp, path);
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
}
