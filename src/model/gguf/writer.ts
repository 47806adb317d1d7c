/**
 * GGUF v3 writer (typed metadata; F32/F16/BF16/Q8_0/Q4_0 tensors encoded from float32, or any supported type from
 * raw ggml bytes), streaming one tensor at a time into a temp file that is renamed into place when complete.
 * Also `writeRandomModel`, a seeded random-weight checkpoint of any supported architecture, for tests and
 * benchmarks.
 */
import { closeSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname, basename, join } from "node:path";
import { InvalidArgumentError, OnepassError } from "../../errors.js";
import { TensorNames, type Architecture, type TensorDType } from "../spec.js";
import { DTYPE_TO_GGML, GGML_TYPES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, VALUE_TYPE_NAMES, ValueType, alignUp, dtypeByteSize, scalarSize, valueTypeName, type ValueTypeName } from "./format.js";
import { encodeTensor } from "./quantize.js";
import { f32ToF16 } from "../../numeric/half.js";
import { readGgufHeader, type GgufValue } from "./reader.js";

/** A metadata value with an explicit GGUF type (`type` as name or id; `itemType` for arrays). */
export interface TypedMetadataValue {
  type: ValueTypeName | number;
  itemType?: ValueTypeName | number;
  value: GgufValue;
}
/**
 * A metadata value. Plain values get a type by inference: string → string, boolean → bool, bigint → u64,
 * integer ≥ 0 → u32, negative integer → i32, other numbers → f32, string[] → array of string,
 * number[] → array of i32 if all are integers else f32. Use TypedMetadataValue to choose otherwise.
 */
export type MetadataInput = string | boolean | number | bigint | string[] | number[] | TypedMetadataValue;

export interface TensorInput {
  name: string;
  /** PyTorch order, e.g. [out, in]; written to the file innermost-first. */
  shape: number[];
  /** Storage type in the file. */
  dtype: TensorDType;
  /** float32 values (row-major in `shape`), encoded on write; f32, f16, bf16, q8_0, q4_0. A function is called
   *  only when the tensor is written, so large models need not be held in memory. */
  data?: Float32Array | (() => Float32Array);
  /** Bytes already in ggml layout for `dtype` (any supported type, e.g. hand-built Q4_K blocks). */
  raw?: Uint8Array | (() => Uint8Array);
}

export interface WriteGgufOptions {
  metadata: Record<string, MetadataInput>;
  tensors: TensorInput[];
  /** Data alignment (default 32); written as general.alignment when not 32. */
  alignment?: number;
}

/** Write a GGUF v3 file atomically (temp file + rename). */
export function writeGguf(path: string, options: WriteGgufOptions): void {
  const alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const metadata = { ...options.metadata };
  if (alignment !== GGUF_DEFAULT_ALIGNMENT) metadata["general.alignment"] = { type: "u32", value: alignment };

  const plan = planTensors(options.tensors, alignment);
  const header = new ByteWriter();
  header.u32(GGUF_MAGIC);
  header.u32(3);
  header.u64(BigInt(options.tensors.length));
  header.u64(BigInt(Object.keys(metadata).length));
  for (const [key, value] of Object.entries(metadata)) {
    header.string(key);
    writeMetadataValue(header, key, value);
  }
  for (const t of plan) {
    header.string(t.input.name);
    header.u32(t.input.shape.length);
    for (let d = t.input.shape.length - 1; d >= 0; d--) header.u64(BigInt(t.input.shape[d]!));
    header.u32(DTYPE_TO_GGML[t.input.dtype]);
    header.u64(BigInt(t.offset));
  }
  const headerBytes = header.bytes();
  const dataStart = alignUp(headerBytes.length, alignment);

  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "w");
    writeAll(fd, headerBytes);
    writeAll(fd, new Uint8Array(dataStart - headerBytes.length));
    let pos = 0;
    for (const t of plan) {
      if (t.offset > pos) writeAll(fd, new Uint8Array(t.offset - pos));
      const bytes = encodeInput(t.input, t.byteSize);
      writeAll(fd, bytes);
      pos = t.offset + t.byteSize;
    }
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    if (err instanceof OnepassError) throw err;
    throw new InvalidArgumentError(`cannot write GGUF file: ${(err as Error).message}`, { file: path }, { cause: err });
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}

function planTensors(tensors: TensorInput[], alignment: number) {
  const names = new Set<string>();
  let offset = 0;
  return tensors.map((input) => {
    const where = { field: input.name };
    if (names.has(input.name)) throw new InvalidArgumentError("duplicate tensor name", where);
    names.add(input.name);
    if (input.shape.length < 1 || input.shape.length > 4 || input.shape.some((n) => !Number.isInteger(n) || n < 1)) {
      throw new InvalidArgumentError(`bad tensor shape [${input.shape.join(", ")}]`, where);
    }
    const type = GGML_TYPES.get(DTYPE_TO_GGML[input.dtype]);
    if (type === undefined) throw new InvalidArgumentError(`unknown dtype ${String(input.dtype)}`, where);
    const inner = input.shape[input.shape.length - 1]!;
    if (inner % type.blockSize !== 0) {
      throw new InvalidArgumentError(`innermost dimension ${inner} is not a multiple of the ${type.name} block size ${type.blockSize}`, where);
    }
    if ((input.data === undefined) === (input.raw === undefined)) throw new InvalidArgumentError("give exactly one of data and raw", where);
    const elements = input.shape.reduce((a, b) => a * b, 1);
    const byteSize = dtypeByteSize(input.dtype, elements);
    offset = alignUp(offset, alignment);
    const planned = { input, elements, byteSize, offset };
    offset += byteSize;
    return planned;
  });
}

function encodeInput(input: TensorInput, byteSize: number): Uint8Array {
  const where = { field: input.name };
  const elements = input.shape.reduce((a, b) => a * b, 1);
  if (input.raw !== undefined) {
    const raw = typeof input.raw === "function" ? input.raw() : input.raw;
    if (raw.length !== byteSize) throw new InvalidArgumentError(`raw data has ${raw.length} bytes, ${input.dtype} [${input.shape.join(", ")}] needs ${byteSize}`, where);
    return raw;
  }
  const data = typeof input.data === "function" ? input.data() : input.data!;
  if (data.length !== elements) throw new InvalidArgumentError(`data has ${data.length} values, shape [${input.shape.join(", ")}] needs ${elements}`, where);
  if (input.dtype === "q4_k" || input.dtype === "q6_k") throw new InvalidArgumentError(`cannot quantise to ${input.dtype}; pass raw bytes`, where);
  return encodeTensor(input.dtype, data);
}

// ---------------------------------------------------------------------------------------------------------
// Metadata encoding

class ByteWriter {
  private buf = Buffer.alloc(1 << 16);
  private len = 0;
  private reserve(n: number): number {
    if (this.len + n > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    const at = this.len;
    this.len += n;
    return at;
  }
  u8(v: number) { const at = this.reserve(1); this.buf.writeUInt8(v, at); }
  i8(v: number) { const at = this.reserve(1); this.buf.writeInt8(v, at); }
  u16(v: number) { const at = this.reserve(2); this.buf.writeUInt16LE(v, at); }
  i16(v: number) { const at = this.reserve(2); this.buf.writeInt16LE(v, at); }
  u32(v: number) { const at = this.reserve(4); this.buf.writeUInt32LE(v, at); }
  i32(v: number) { const at = this.reserve(4); this.buf.writeInt32LE(v, at); }
  f32(v: number) { const at = this.reserve(4); this.buf.writeFloatLE(v, at); }
  f64(v: number) { const at = this.reserve(8); this.buf.writeDoubleLE(v, at); }
  u64(v: bigint) { const at = this.reserve(8); this.buf.writeBigUInt64LE(v, at); }
  i64(v: bigint) { const at = this.reserve(8); this.buf.writeBigInt64LE(v, at); }
  string(s: string) {
    const b = Buffer.from(s, "utf8");
    this.u64(BigInt(b.length));
    const at = this.reserve(b.length); // reserve before touching this.buf: it may reallocate
    b.copy(this.buf, at);
  }
  bytes(): Uint8Array { return this.buf.subarray(0, this.len); }
}

function typeId(t: ValueTypeName | number, key: string): number {
  const id = typeof t === "number" ? t : VALUE_TYPE_NAMES.indexOf(t);
  if (id < 0 || id > ValueType.F64) throw new InvalidArgumentError(`unknown metadata type ${String(t)}`, { field: key });
  return id;
}

function inferType(v: MetadataInput, key: string): { type: number; itemType?: number; value: GgufValue } {
  if (typeof v === "string") return { type: ValueType.String, value: v };
  if (typeof v === "boolean") return { type: ValueType.Bool, value: v };
  if (typeof v === "bigint") return { type: ValueType.U64, value: v };
  if (typeof v === "number") {
    if (Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return { type: ValueType.U32, value: v };
    if (Number.isInteger(v) && v < 0 && v >= -(2 ** 31)) return { type: ValueType.I32, value: v };
    return { type: ValueType.F32, value: v };
  }
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === "string")) return { type: ValueType.Array, itemType: ValueType.String, value: v };
    if (v.every((x) => typeof x === "number")) {
      const ints = (v as number[]).every((x) => Number.isInteger(x));
      return { type: ValueType.Array, itemType: ints ? ValueType.I32 : ValueType.F32, value: v };
    }
    throw new InvalidArgumentError("mixed-type arrays need an explicit type", { field: key });
  }
  const typed = v as TypedMetadataValue;
  const type = typeId(typed.type, key);
  if (type === ValueType.Array) {
    if (typed.itemType === undefined) throw new InvalidArgumentError("array metadata needs itemType", { field: key });
    return { type, itemType: typeId(typed.itemType, key), value: typed.value };
  }
  return { type, value: typed.value };
}

function writeMetadataValue(w: ByteWriter, key: string, input: MetadataInput): void {
  const { type, itemType, value } = inferType(input, key);
  w.u32(type);
  writeTyped(w, key, type, itemType, value);
}

function writeTyped(w: ByteWriter, key: string, type: number, itemType: number | undefined, value: GgufValue): void {
  const bad = () => new InvalidArgumentError(`value ${String(value).slice(0, 40)} does not fit type ${valueTypeName(type)}`, { field: key });
  if (type === ValueType.Array) {
    if (!Array.isArray(value) || itemType === undefined) throw bad();
    w.u32(itemType);
    w.u64(BigInt(value.length));
    // Nested arrays are written with their element type inferred from the first element's own array.
    for (const item of value) writeTyped(w, key, itemType, Array.isArray(item) ? inferType(item as MetadataInput, key).itemType : undefined, item);
    return;
  }
  if (type === ValueType.String) {
    if (typeof value !== "string") throw bad();
    w.string(value);
    return;
  }
  if (type === ValueType.Bool) {
    if (typeof value !== "boolean") throw bad();
    w.u8(value ? 1 : 0);
    return;
  }
  if (type === ValueType.U64 || type === ValueType.I64) {
    const v = typeof value === "bigint" ? value : typeof value === "number" && Number.isInteger(value) ? BigInt(value) : undefined;
    if (v === undefined) throw bad();
    if (type === ValueType.U64) w.u64(v);
    else w.i64(v);
    return;
  }
  if (typeof value !== "number" || scalarSize(type) === undefined) throw bad();
  switch (type) {
    case ValueType.U8: w.u8(value); break;
    case ValueType.I8: w.i8(value); break;
    case ValueType.U16: w.u16(value); break;
    case ValueType.I16: w.i16(value); break;
    case ValueType.U32: w.u32(value); break;
    case ValueType.I32: w.i32(value); break;
    case ValueType.F32: w.f32(value); break;
    case ValueType.F64: w.f64(value); break;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Random models

/** sfc32: a small, fast, seeded 32-bit PRNG. */
export class Sfc32 {
  private a: number;
  private b: number;
  private c: number;
  private d = 1;
  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = seed >>> 0;
    for (let i = 0; i < 12; i++) this.nextU32();
  }
  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }
  /** Approximately standard normal (Irwin–Hall sum of 4 uniforms, rescaled to unit variance). */
  normal(): number {
    return (this.next() + this.next() + this.next() + this.next() - 2) * 1.7320508075688772;
  }
  /** Fill with random bytes (state kept in locals: ~10x faster than calling nextU32 per word). */
  fill(out: Uint8Array): void {
    let { a, b, c, d } = this;
    const words = out.byteOffset % 4 === 0 ? out.length >>> 2 : 0;
    const u32 = new Uint32Array(out.buffer, out.byteOffset, words); // [words]
    for (let i = 0; i < words; i++) {
      const t = (((a + b) | 0) + d) | 0;
      d = (d + 1) | 0;
      a = b ^ (b >>> 9);
      b = (c + (c << 3)) | 0;
      c = ((c << 21) | (c >>> 11)) + t | 0;
      u32[i] = t;
    }
    Object.assign(this, { a, b, c, d });
    for (let i = words * 4; i < out.length; i++) out[i] = this.nextU32() & 0xff;
  }
}

export interface RandomModelOptions {
  architecture: Architecture;
  /** Transformer blocks L. */
  blocks: number;
  dim: number;
  heads: number;
  kvHeads: number;
  /** Default dim / heads; when different it is written as attention.key_length/value_length. */
  headDim?: number;
  ffnDim: number;
  vocabSize: number;
  /** Storage type of the 2-D weight matrices (norms and biases stay F32). */
  dtype: "f32" | "f16" | "bf16" | "q8_0" | "q4_0";
  seed: number;
  /** 'byte-vocab' (default): a SentencePiece-style vocab with <unk>, <s>, </s>, 256 byte tokens and filler pieces.
   *  'copy-from:<gguf path>': the tokenizer.* metadata of another GGUF (vocabSize must match its token count). */
  tokenizer?: "byte-vocab" | `copy-from:${string}`;
  /** Default false. */
  tiedEmbeddings?: boolean;
  contextLength?: number;
  /** Default 10000 for llama, 1e6 for qwen2/qwen3. */
  ropeTheta?: number;
  rmsNormEps?: number;
  /** Standard deviation of the weights (default 0.02). */
  weightStd?: number;
  name?: string;
}

/**
 * Write a random-weight model of any supported architecture. Quantised matrices are generated directly as
 * random blocks (random codes, per-block scale around weightStd/codeStd), so writing a 0.5B-parameter Q4_0
 * file takes seconds.
 */
export function writeRandomModel(path: string, o: RandomModelOptions): void {
  writeGguf(path, randomModelContents(o));
}

/** The metadata and (lazily generated) tensors of `writeRandomModel`, to adjust before `writeGguf`. */
export function randomModelContents(o: RandomModelOptions): WriteGgufOptions {
  const headDim = o.headDim ?? o.dim / o.heads;
  for (const [k, v] of Object.entries({ blocks: o.blocks, dim: o.dim, heads: o.heads, kvHeads: o.kvHeads, headDim, ffnDim: o.ffnDim, vocabSize: o.vocabSize })) {
    if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(`${k} must be a positive integer (got ${v})`, { field: k });
  }
  if (o.heads % o.kvHeads !== 0) throw new InvalidArgumentError("heads must be a multiple of kvHeads", { field: "kvHeads" });
  const arch = o.architecture;
  const std = o.weightStd ?? 0.02;
  const rng = new Sfc32(o.seed);
  const metadata: Record<string, MetadataInput> = {
    "general.architecture": arch,
    "general.name": o.name ?? `random-${arch}`,
    [`${arch}.block_count`]: o.blocks,
    [`${arch}.context_length`]: o.contextLength ?? 2048,
    [`${arch}.embedding_length`]: o.dim,
    [`${arch}.feed_forward_length`]: o.ffnDim,
    [`${arch}.attention.head_count`]: o.heads,
    [`${arch}.attention.head_count_kv`]: o.kvHeads,
    [`${arch}.rope.dimension_count`]: headDim,
    [`${arch}.rope.freq_base`]: { type: "f32", value: o.ropeTheta ?? (arch === "llama" ? 10000 : 1000000) },
    [`${arch}.attention.layer_norm_rms_epsilon`]: { type: "f32", value: o.rmsNormEps ?? (arch === "llama" ? 1e-5 : 1e-6) },
  };
  if (headDim * o.heads !== o.dim) {
    metadata[`${arch}.attention.key_length`] = headDim;
    metadata[`${arch}.attention.value_length`] = headDim;
  }
  Object.assign(metadata, tokenizerMetadata(o.tokenizer ?? "byte-vocab", o.vocabSize));

  const matrix = (name: string, rows: number, cols: number): TensorInput => {
    if (o.dtype === "q4_0" || o.dtype === "q8_0") {
      if (cols % 32 !== 0) throw new InvalidArgumentError(`${o.dtype} needs input width ${cols} to be a multiple of 32`, { field: name });
      return { name, shape: [rows, cols], dtype: o.dtype, raw: () => randomBlocks(o.dtype as "q4_0" | "q8_0", rows * cols, std, rng) };
    }
    return { name, shape: [rows, cols], dtype: o.dtype, data: () => randomNormal(rows * cols, 0, std, rng) };
  };
  const vector = (name: string, n: number, mean: number, s: number): TensorInput => ({ name, shape: [n], dtype: "f32", data: () => randomNormal(n, mean, s, rng) });

  const qDim = o.heads * headDim;
  const kvDim = o.kvHeads * headDim;
  const tensors: TensorInput[] = [matrix(TensorNames.tokenEmbedding, o.vocabSize, o.dim), vector(TensorNames.outputNorm, o.dim, 1, 0.1)];
  if (!o.tiedEmbeddings) tensors.push(matrix(TensorNames.output, o.vocabSize, o.dim));
  for (let i = 0; i < o.blocks; i++) {
    const n = TensorNames.block(i);
    tensors.push(vector(n.attnNorm, o.dim, 1, 0.1), matrix(n.q, qDim, o.dim), matrix(n.k, kvDim, o.dim), matrix(n.v, kvDim, o.dim));
    if (arch === "qwen2") tensors.push(vector(n.qBias, qDim, 0, std), vector(n.kBias, kvDim, 0, std), vector(n.vBias, kvDim, 0, std));
    if (arch === "qwen3") tensors.push(vector(n.qNorm, headDim, 1, 0.1), vector(n.kNorm, headDim, 1, 0.1));
    tensors.push(matrix(n.o, o.dim, qDim), vector(n.ffnNorm, o.dim, 1, 0.1));
    tensors.push(matrix(n.gate, o.ffnDim, o.dim), matrix(n.up, o.ffnDim, o.dim), matrix(n.down, o.dim, o.ffnDim));
  }
  return { metadata, tensors };
}

function randomNormal(n: number, mean: number, std: number, rng: Sfc32): Float32Array {
  const out = new Float32Array(n); // [n]
  for (let i = 0; i < n; i++) out[i] = mean + std * rng.normal();
  return out;
}

/** Random Q4_0/Q8_0 blocks whose dequantised values have roughly the given standard deviation. */
function randomBlocks(dtype: "q4_0" | "q8_0", elements: number, std: number, rng: Sfc32): Uint8Array {
  const blockBytes = dtype === "q4_0" ? 18 : 34;
  // Std of the uniform codes: q4_0 codes 0..15 minus 8; q8_0 codes -128..127.
  const codeStd = dtype === "q4_0" ? Math.sqrt((16 * 16 - 1) / 12) : Math.sqrt((256 * 256 - 1) / 12);
  const blocks = elements / 32;
  const out = new Uint8Array(blocks * blockBytes); // [blocks, blockBytes]
  rng.fill(out);
  for (let b = 0; b < blocks; b++) {
    const d = f32ToF16((std / codeStd) * (0.75 + 0.5 * rng.next()));
    out[b * blockBytes] = d & 0xff;
    out[b * blockBytes + 1] = d >> 8;
  }
  return out;
}

function tokenizerMetadata(spec: string, vocabSize: number): Record<string, MetadataInput> {
  if (spec.startsWith("copy-from:")) {
    const from = spec.slice("copy-from:".length);
    const header = readGgufHeader(from);
    const out: Record<string, MetadataInput> = {};
    for (const [key, e] of header.metadata) {
      if (key.startsWith("tokenizer.")) out[key] = { type: e.type, itemType: e.itemType, value: e.value };
    }
    const tokens = header.metadata.get("tokenizer.ggml.tokens")?.value;
    if (!Array.isArray(tokens) || tokens.length !== vocabSize) {
      throw new InvalidArgumentError(`vocabSize ${vocabSize} differs from the ${Array.isArray(tokens) ? tokens.length : 0} tokens of ${from}`, { file: from, field: "tokenizer.ggml.tokens" });
    }
    return out;
  }
  if (spec !== "byte-vocab") throw new InvalidArgumentError(`unknown tokenizer option "${spec}"`, { field: "tokenizer" });
  if (vocabSize < 259) throw new InvalidArgumentError(`byte-vocab needs vocabSize >= 259 (got ${vocabSize})`, { field: "vocabSize" });
  const tokens: string[] = ["<unk>", "<s>", "</s>"];
  const types: number[] = [2, 3, 3];
  const scores: number[] = [0, 0, 0];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(6);
    scores.push(0);
  }
  for (let i = 0; tokens.length < vocabSize; i++) {
    tokens.push((i % 2 === 0 ? "\u2581" : "") + bijectiveBase26((i >> 1) + 1));
    types.push(1);
    scores.push(-i);
  }
  return {
    "tokenizer.ggml.model": "llama",
    "tokenizer.ggml.tokens": tokens,
    "tokenizer.ggml.scores": { type: "array", itemType: "f32", value: scores },
    "tokenizer.ggml.token_type": { type: "array", itemType: "i32", value: types },
    "tokenizer.ggml.unknown_token_id": 0,
    "tokenizer.ggml.bos_token_id": 1,
    "tokenizer.ggml.eos_token_id": 2,
  };
}

/** 1 → "a", 26 → "z", 27 → "aa", ... */
function bijectiveBase26(n: number): string {
  let s = "";
  while (n > 0) {
    n--;
    s = String.fromCharCode(97 + (n % 26)) + s;
    n = Math.floor(n / 26);
  }
  return s;
}
