/**
 * Llama 3.1-style RoPE scaling from a GGUF file. llama.cpp's converter does not store the HF parameters
 * (factor, low/high frequency factors, original context); it stores the resulting per-frequency divisors as
 * the tensor `rope_freqs.weight` [ropeDim/2]:
 *   r_i = 1 (short wavelengths), factor (long wavelengths), 1 / ((1 - s_i)/factor + s_i) in between, where
 *   s_i = (C * f_i / 2π - low) / (high - low), f_i = theta^(-2i/ropeDim), C = original context length.
 * We recover the parameters: factor = max r; s_i of the in-between frequencies is linear in f_i, and a line fit
 * gives C/(high - low) and -low/(high - low). C itself is not identifiable (scaling C, low and high together gives
 * the same frequencies), so it comes from `rope.scaling.original_context_length` when present, else 8192
 * (Llama 3.1's value). The result is checked by recomputing every r_i.
 */
import { ModelFormatError, UnsupportedModelError } from "../../errors.js";
import type { RopeScaling } from "../spec.js";

export const ROPE_FREQS_TENSOR = "rope_freqs.weight";

/** The llama3 divisors r_i for given parameters (HF `_compute_llama3_parameters`, as llama.cpp stores them). */
export function llama3RopeDivisors(s: RopeScaling, theta: number, ropeDim: number): Float64Array {
  const out = new Float64Array(ropeDim / 2); // [ropeDim/2]
  const lowWavelen = s.originalContextLength / s.lowFreqFactor;
  const highWavelen = s.originalContextLength / s.highFreqFactor;
  for (let i = 0; i < out.length; i++) {
    const freq = theta ** ((-2 * i) / ropeDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = s.factor;
    else {
      const smooth = (s.originalContextLength / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

export function ropeScalingFromFreqs(
  divisors: Float32Array, // [ropeDim/2]
  theta: number,
  ropeDim: number,
  originalContextLength: number | undefined,
  file: string,
): RopeScaling | undefined {
  if (divisors.length !== ropeDim / 2) {
    throw new ModelFormatError(`rope_freqs has ${divisors.length} values, expected ropeDim/2 = ${ropeDim / 2}`, { file, field: ROPE_FREQS_TENSOR });
  }
  const unsupported = (why: string) => new UnsupportedModelError(`rope_freqs does not follow llama3 rope scaling: ${why}`, { file, field: ROPE_FREQS_TENSOR });
  let factor = 0;
  for (const r of divisors) {
    if (!Number.isFinite(r) || r <= 0) throw unsupported(`divisor ${r}`);
    factor = Math.max(factor, r);
  }
  if (Math.abs(factor - 1) < 1e-6) return undefined; // all ones: no scaling
  const tol = 1e-4 * factor;
  const xs: number[] = [];
  const ss: number[] = [];
  divisors.forEach((r, i) => {
    if (r > 1 + tol && r < factor - tol) {
      xs.push(theta ** ((-2 * i) / ropeDim) / (2 * Math.PI));
      ss.push((1 / r - 1 / factor) / (1 - 1 / factor));
    }
  });
  if (xs.length < 2) throw unsupported("fewer than two smoothed frequencies, so the band edges cannot be recovered");
  // Least-squares line s = a x + b.
  const n = xs.length;
  const mx = xs.reduce((p, v) => p + v, 0) / n;
  const ms = ss.reduce((p, v) => p + v, 0) / n;
  let sxx = 0, sxs = 0;
  for (let k = 0; k < n; k++) {
    sxx += (xs[k]! - mx) ** 2;
    sxs += (xs[k]! - mx) * (ss[k]! - ms);
  }
  const a = sxs / sxx;
  const b = ms - a * mx;
  if (!(a > 0)) throw unsupported("smoothing does not grow with frequency");
  const C = originalContextLength ?? 8192;
  const lowFreqFactor = (-b * C) / a;
  const highFreqFactor = lowFreqFactor + C / a;
  const scaling: RopeScaling = { type: "llama3", factor, lowFreqFactor, highFreqFactor, originalContextLength: C };
  const check = llama3RopeDivisors(scaling, theta, ropeDim);
  for (let i = 0; i < check.length; i++) {
    if (Math.abs(check[i]! - divisors[i]!) > 1e-3 * divisors[i]!) throw unsupported(`divisor ${i} is ${divisors[i]}, the fitted parameters give ${check[i]}`);
  }
  return scaling;
}
