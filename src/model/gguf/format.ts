/**
 * Constants of the GGUF container format (v2/v3) and the ggml tensor types onepass can read.
 * Spec: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
 */
import type { TensorDType } from "../spec.js";

/** "GGUF" read as a little-endian u32. */
export const GGUF_MAGIC = 0x46554747;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value type ids. */
export const enum ValueType {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
}

/** Names of the scalar value types, indexed by id (for messages and the writer). */
export const VALUE_TYPE_NAMES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"] as const;
export type ValueTypeName = (typeof VALUE_TYPE_NAMES)[number];

/** Name of a value type id, for messages. */
export function valueTypeName(t: number): string {
  return VALUE_TYPE_NAMES[t] ?? `type ${t}`;
}

/** Byte size of fixed-size scalar types (string/array are variable). */
export function scalarSize(t: number): number | undefined {
  switch (t) {
    case ValueType.U8: case ValueType.I8: case ValueType.Bool: return 1;
    case ValueType.U16: case ValueType.I16: return 2;
    case ValueType.U32: case ValueType.I32: case ValueType.F32: return 4;
    case ValueType.U64: case ValueType.I64: case ValueType.F64: return 8;
    default: return undefined;
  }
}

/** A ggml tensor type: `blockSize` elements are stored in `typeSize` bytes. */
export interface GgmlType {
  id: number;
  name: string;
  blockSize: number;
  typeSize: number;
  /** Set when onepass can dequantise it. */
  dtype?: TensorDType;
}

/** Every ggml type id we know the size of (so the tensor table can be checked), readable or not. */
export const GGML_TYPES: ReadonlyMap<number, GgmlType> = new Map(
  ([
    [0, "F32", 1, 4, "f32"],
    [1, "F16", 1, 2, "f16"],
    [2, "Q4_0", 32, 18, "q4_0"],
    [3, "Q4_1", 32, 20],
    [6, "Q5_0", 32, 22],
    [7, "Q5_1", 32, 24],
    [8, "Q8_0", 32, 34, "q8_0"],
    [9, "Q8_1", 32, 36],
    [10, "Q2_K", 256, 84],
    [11, "Q3_K", 256, 110],
    [12, "Q4_K", 256, 144, "q4_k"],
    [13, "Q5_K", 256, 176],
    [14, "Q6_K", 256, 210, "q6_k"],
    [15, "Q8_K", 256, 292],
    [24, "I8", 1, 1],
    [25, "I16", 1, 2],
    [26, "I32", 1, 4],
    [27, "I64", 1, 8],
    [28, "F64", 1, 8],
    [30, "BF16", 1, 2, "bf16"],
  ] as [number, string, number, number, TensorDType?][]).map(([id, name, blockSize, typeSize, dtype]) => [
    id,
    { id, name, blockSize, typeSize, dtype },
  ]),
);

/** ggml type id of each dtype onepass reads/writes. */
export const DTYPE_TO_GGML: Readonly<Record<TensorDType, number>> = {
  f32: 0, f16: 1, q4_0: 2, q8_0: 8, q4_k: 12, q6_k: 14, bf16: 30,
};

/** Bytes taken by `elements` values of `dtype` (elements must be a multiple of the block size). */
export function dtypeByteSize(dtype: TensorDType, elements: number): number {
  const t = GGML_TYPES.get(DTYPE_TO_GGML[dtype])!;
  return (elements / t.blockSize) * t.typeSize;
}

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}
