/**
 * Dequantisation of ggml block formats to float32, written from the block definitions in ggml's
 * ggml-common.h / the GGUF spec:
 * - Q8_0  (34 B / 32 values): f16 d, int8 q[32];                          x = d * q
 * - Q4_0  (18 B / 32 values): f16 d, u8 qs[16]; value j is the low nibble of qs[j], value j+16 the high nibble;
 *                                                                         x = d * (q - 8)
 * - Q4_K (144 B / 256 values): f16 d, f16 dmin, u8 scales[12] (8 packed 6-bit scale/min pairs), u8 qs[128];
 *   sub-block s of 32 values: x = d * sc[s] * q - dmin * m[s]; each 64 values use 32 bytes of qs, the first
 *   32 from the low nibbles (sub-block 2i), the next 32 from the high nibbles (sub-block 2i+1).
 * - Q6_K (210 B / 256 values): u8 ql[128] (low 4 bits), u8 qh[64] (high 2 bits), int8 scales[16], f16 d;
 *   x = d * scales[sub-block of 16] * (q - 32).
 */
import type { TensorDType } from "../spec.js";
import { bytesToFloats, f16ToF32 } from "../../numeric/half.js";

/** Dequantise `elements` values of `dtype` from `src` (little-endian bytes) into a new Float32Array. */
export function dequantize(dtype: TensorDType, src: Uint8Array, elements: number): Float32Array {
  if (dtype === "f32" || dtype === "f16" || dtype === "bf16") return bytesToFloats(src.subarray(0, elements * (dtype === "f32" ? 4 : 2)), dtype);
  const out = new Float32Array(elements); // [elements]
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  switch (dtype) {
    case "q8_0": {
      const s8 = new Int8Array(src.buffer, src.byteOffset, src.byteLength);
      for (let b = 0, o = 0; o < elements; b += 34, o += 32) {
        const d = f16ToF32(src[b]! | (src[b + 1]! << 8));
        for (let j = 0; j < 32; j++) out[o + j] = d * s8[b + 2 + j]!;
      }
      break;
    }
    case "q4_0":
      for (let b = 0, o = 0; o < elements; b += 18, o += 32) {
        const d = f16ToF32(src[b]! | (src[b + 1]! << 8));
        for (let j = 0; j < 16; j++) {
          const q = src[b + 2 + j]!;
          out[o + j] = d * ((q & 0xf) - 8);
          out[o + j + 16] = d * ((q >> 4) - 8);
        }
      }
      break;
    case "q4_k":
      for (let b = 0, o = 0; o < elements; b += 144, o += 256) dequantQ4KBlock(src, view, b, out, o);
      break;
    case "q6_k":
      for (let b = 0, o = 0; o < elements; b += 210, o += 256) dequantQ6KBlock(src, view, b, out, o);
      break;
  }
  return out;
}

/** The 6-bit scale and min of sub-block j (0..7) from the 12 packed scale bytes starting at `s`. */
export function q4kScaleMin(src: Uint8Array, s: number, j: number): [scale: number, min: number] {
  if (j < 4) return [src[s + j]! & 63, src[s + j + 4]! & 63];
  return [
    (src[s + j + 4]! & 0x0f) | ((src[s + j - 4]! >> 6) << 4),
    (src[s + j + 4]! >> 4) | ((src[s + j]! >> 6) << 4),
  ];
}

function dequantQ4KBlock(src: Uint8Array, view: DataView, b: number, out: Float32Array, o: number): void {
  const d = f16ToF32(view.getUint16(b, true));
  const dmin = f16ToF32(view.getUint16(b + 2, true));
  const scales = b + 4;
  const qs = b + 16;
  for (let pair = 0; pair < 4; pair++) {
    const [sc0, m0] = q4kScaleMin(src, scales, 2 * pair);
    const [sc1, m1] = q4kScaleMin(src, scales, 2 * pair + 1);
    const d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1;
    const q = qs + 32 * pair;
    const y = o + 64 * pair;
    for (let l = 0; l < 32; l++) {
      const byte = src[q + l]!;
      out[y + l] = d0 * (byte & 0xf) - min0;
      out[y + 32 + l] = d1 * (byte >> 4) - min1;
    }
  }
}

function dequantQ6KBlock(src: Uint8Array, view: DataView, b: number, out: Float32Array, o: number): void {
  const d = f16ToF32(view.getUint16(b + 208, true));
  for (let half = 0; half < 2; half++) {
    const ql = b + 64 * half;
    const qh = b + 128 + 32 * half;
    const sc = b + 192 + 8 * half;
    const y = o + 128 * half;
    for (let l = 0; l < 32; l++) {
      const is = l >> 4;
      const h = src[qh + l]!;
      const q1 = ((src[ql + l]! & 0xf) | ((h & 3) << 4)) - 32;
      const q2 = ((src[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32;
      const q3 = ((src[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
      const q4 = ((src[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
      out[y + l] = d * view.getInt8(sc + is) * q1;
      out[y + l + 32] = d * view.getInt8(sc + is + 2) * q2;
      out[y + l + 64] = d * view.getInt8(sc + is + 4) * q3;
      out[y + l + 96] = d * view.getInt8(sc + is + 6) * q4;
    }
  }
}

/**
 * Repack Q4_0 blocks of a [n, k] matrix into ONNX Runtime MatMulNBits layout: per row, per block of 32, 16 bytes
 * with value 2i in the low nibble and 2i+1 in the high nibble of byte i, scale = d, implicit zero point 8.
 * Exact: both formats compute d * (q - 8).
 */
export function q4_0ToMatMulNBits(src: Uint8Array, n: number, k: number): { data: Uint8Array; scales: Float32Array } {
  const blocksPerRow = k / 32;
  const data = new Uint8Array(n * blocksPerRow * 16); // [N, K/32, 16]
  const scales = new Float32Array(n * blocksPerRow); // [N * K/32]
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const q = new Uint8Array(32); // [32] nibble values of one block
  for (let blk = 0; blk < n * blocksPerRow; blk++) {
    const b = blk * 18;
    scales[blk] = f16ToF32(view.getUint16(b, true));
    for (let j = 0; j < 16; j++) {
      const byte = src[b + 2 + j]!;
      q[j] = byte & 0xf;
      q[j + 16] = byte >> 4;
    }
    const o = blk * 16;
    for (let i = 0; i < 16; i++) data[o + i] = q[2 * i]! | (q[2 * i + 1]! << 4);
  }
  return { data, scales };
}
