/** Rotary-embedding frequencies and cos/sin caches shared by the graph builder and the reference pass. */
import type { ModelSpec } from "../model/spec.js";

/** Inverse frequencies θ_i = theta^(-2i/rotDim), with llama3 frequency scaling applied when the spec has it. */
export function ropeInverseFrequencies(spec: ModelSpec): Float64Array {
  const half = spec.ropeDim / 2;
  const inv = new Float64Array(half); // [rotDim/2]
  for (let i = 0; i < half; i++) inv[i] = Math.pow(spec.ropeTheta, (-2 * i) / spec.ropeDim);
  const s = spec.ropeScaling;
  if (s !== undefined && s.type === "llama3") {
    const lowWavelen = s.originalContextLength / s.lowFreqFactor;
    const highWavelen = s.originalContextLength / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen < highWavelen) continue; // high frequencies unchanged
      if (wavelen > lowWavelen) {
        inv[i] = inv[i] / s.factor;
      } else {
        const smooth = (s.originalContextLength / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i] / s.factor) + smooth * inv[i];
      }
    }
  }
  return inv;
}

/** cos/sin caches [positions, rotDim/2] in float32, as ORT's RotaryEmbedding / GroupQueryAttention take them. */
export function ropeCaches(spec: ModelSpec, positions: number): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInverseFrequencies(spec);
  const half = inv.length;
  const cos = new Float32Array(positions * half); // [positions, half]
  const sin = new Float32Array(positions * half); // [positions, half]
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * inv[i];
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}
