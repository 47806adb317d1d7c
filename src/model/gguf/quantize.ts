/**
 * Float32 → ggml storage encoders, matching ggml's reference (scalar) quantisers: f16 with round-to-nearest-even,
 * Q8_0 (d = amax/127, q = round-half-away(x/d)) and Q4_0 (d = signed max-magnitude / -8,
 * q = min(15, trunc(x/d + 8.5))). Arithmetic is rounded to float32 at each step, as the C code does.
 */
import type { TensorDType } from "../spec.js";
import { f32ToF16, floatsToBytes } from "../../numeric/half.js";

const fr = Math.fround;

/** Encode float32 values into ggml bytes for `dtype` (f32, f16, bf16, q8_0, q4_0). */
export function encodeTensor(dtype: TensorDType, x: Float32Array): Uint8Array {
  switch (dtype) {
    case "f32":
    case "f16":
    case "bf16":
      return floatsToBytes(x, dtype);
    case "q8_0":
      return quantizeQ8_0(x);
    case "q4_0":
      return quantizeQ4_0(x);
    default:
      throw new RangeError(`encodeTensor: cannot quantise to ${dtype} (pass raw bytes instead)`);
  }
}

/** ggml quantize_row_q8_0_ref. x.length must be a multiple of 32. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const blocks = x.length / 32;
  const out = new Uint8Array(blocks * 34); // [blocks, 34]
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const o = b * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[o + j]!));
    const d = fr(amax / 127);
    const id = d !== 0 ? fr(1 / d) : 0;
    view.setUint16(b * 34, f32ToF16(d), true);
    for (let j = 0; j < 32; j++) {
      const v = fr(x[o + j]! * id);
      view.setInt8(b * 34 + 2 + j, Math.sign(v) * Math.floor(Math.abs(v) + 0.5));
    }
  }
  return out;
}

/** ggml quantize_row_q4_0_ref. x.length must be a multiple of 32. */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const blocks = x.length / 32;
  const out = new Uint8Array(blocks * 18); // [blocks, 18]
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const o = b * 32;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[o + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fr(max / -8);
    const id = d !== 0 ? fr(1 / d) : 0;
    view.setUint16(b * 18, f32ToF16(d), true);
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(fr(fr(x[o + j]! * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(fr(fr(x[o + 16 + j]! * id) + 8.5)));
      out[b * 18 + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}
