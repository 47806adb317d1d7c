/**
 * The one place onepass converts between float32 and the two 16-bit float formats (Node 20 has no
 * Float16Array). Every module (GGUF, safetensors, feature cache, ORT outputs) calls these.
 *
 * - IEEE 754 binary16 ("f16"): float32 → f16 rounds to nearest, ties to even, with gradual underflow to
 *   subnormals and overflow to ±Infinity; NaN becomes the quiet NaN sign|0x7e00 (as ggml does).
 *   f16 → float32 is exact (a 65,536-entry table).
 * - bfloat16 ("bf16", the top 16 bits of a float32): float32 → bf16 rounds to nearest, ties to even; NaN stays
 *   NaN (quiet bit set). bf16 → float32 is exact.
 *
 * Scalar functions take/return the 16 bits as a number; bulk functions work on Uint16Array (host byte order,
 * little-endian on every platform onepass runs on).
 */

const f32Scratch = new Float32Array(1); // [1]
const u32Scratch = new Uint32Array(f32Scratch.buffer); // [1]: bits of f32Scratch

/** float32 bits → f16 bits, round to nearest even. */
function f32BitsToF16(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return mant !== 0 ? sign | 0x7e00 : sign | 0x7c00; // NaN (quiet) / Inf
  const e = exp - 127 + 15; // f16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00; // ≥ 2^16: beyond the largest finite half after rounding
  if (e <= 0) {
    // Subnormal half (or zero): value = mant24 * 2^(e-25); half mantissa = value / 2^-24.
    if (e < -10) return sign; // below 2^-25: rounds to ±0
    mant |= 0x800000;
    const shift = 14 - e; // 14..24 dropped bits
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++; // may carry into the smallest normal: right
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++; // a carry into the exponent (or Inf) is right
  return sign | half;
}

/** float32 bits → bf16 bits, round to nearest even; NaN keeps its top bits and gets the quiet bit. */
function f32BitsToBf16(b: number): number {
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Exact float32 value of an f16 bit pattern (computed, not looked up: builds the table). */
function f16BitsValue(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

const F16_TABLE = /* @__PURE__ */ (() => {
  const t = new Float32Array(65536); // [65536]: float32 value of every f16 bit pattern
  for (let h = 0; h < 65536; h++) t[h] = f16BitsValue(h);
  return t;
})();

/** Bits of the f16 nearest to `x` (ties to even). */
export function f32ToF16(x: number): number {
  f32Scratch[0] = x;
  return f32BitsToF16(u32Scratch[0]!);
}

/** The f16 with these bits (low 16 bits of `h`), as a number (exact). */
export function f16ToF32(h: number): number {
  return F16_TABLE[h & 0xffff]!;
}

/** Bits of the bf16 nearest to `x` (ties to even). */
export function f32ToBf16(x: number): number {
  f32Scratch[0] = x;
  return f32BitsToBf16(u32Scratch[0]!);
}

/** The bf16 with these bits (low 16 bits of `h`), as a number (exact). */
export function bf16ToF32(h: number): number {
  u32Scratch[0] = (h & 0xffff) << 16;
  return f32Scratch[0]!;
}

/** Encode float32 values as f16 bits. `out` [n] may be given to avoid an allocation. */
export function encodeF16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length); // [n]
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToF16(bits[i]!);
  return out;
}

/** Decode f16 bits to float32. `out` [n] may be given to avoid an allocation. */
export function decodeF16(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) out[i] = F16_TABLE[src[i]!]!;
  return out;
}

/** Encode float32 values as bf16 bits. `out` [n] may be given to avoid an allocation. */
export function encodeBf16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length); // [n]
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToBf16(bits[i]!);
  return out;
}

/** Decode bf16 bits to float32. `out` [n] may be given to avoid an allocation. */
export function decodeBf16(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const bits = new Uint32Array(out.buffer, out.byteOffset, src.length); // [n]
  for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  return out;
}

/** The float storage types that hold plain float32/f16/bf16 values (no blocks). */
export type FloatStorage = "f32" | "f16" | "bf16";

/** Little-endian bytes of float32 values stored as f32/f16/bf16 (a fresh buffer). */
export function floatsToBytes(values: Float32Array, dtype: FloatStorage): Uint8Array {
  if (dtype === "f32") return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  const bits = dtype === "bf16" ? encodeBf16(values) : encodeF16(values); // [n]
  return new Uint8Array(bits.buffer);
}

/** float32 values of little-endian f32/f16/bf16 bytes, which may sit at any offset (copied to an aligned buffer). */
export function bytesToFloats(bytes: Uint8Array, dtype: FloatStorage): Float32Array {
  if (dtype === "f32") {
    const out = new Float32Array(bytes.byteLength / 4); // [n]
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  const bits = new Uint16Array(bytes.byteLength / 2); // [n]
  new Uint8Array(bits.buffer).set(bytes);
  return dtype === "bf16" ? decodeBf16(bits) : decodeF16(bits);
}
