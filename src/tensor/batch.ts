import type { HiddenStates } from "../types/hidden.js";
import { InvalidArgumentError } from "../errors.js";
import type { FloatArray } from "./kernel.js";

/** A padded mini-batch of prompts' hidden states, layer-major so each layer's tokens are contiguous. */
export interface ProbeBatch {
  /** L + 1 */
  layers: number;
  batch: number;
  /** Longest prompt in the batch. */
  tokens: number;
  dim: number;
  /** [L+1, B, T, d]; padded positions are 0. */
  x: FloatArray;
  /** [B, T] 1 = real token, 0 = padding (right padding). */
  mask: Uint8Array;
  /** [B] number of real tokens. */
  lengths: Int32Array;
}

/**
 * A reusable float32 buffer for consecutive batches (training): avoids a fresh multi-hundred-MB allocation per
 * step. A batch built in it is valid until the next makeBatch with the same scratch.
 */
export interface BatchScratch {
  buffer: Float32Array;
}

/** Stacks examples (right-padded to the longest one). All must share L+1 and d. */
export function makeBatch(hs: readonly HiddenStates[], dtype: "f32" | "f64" = "f32", scratch?: BatchScratch): ProbeBatch {
  if (hs.length === 0) throw new InvalidArgumentError("empty batch", { field: "batch" });
  const L1 = hs[0].layers;
  const d = hs[0].dim;
  let T = 0;
  hs.forEach((h, i) => {
    if (h.layers !== L1 || h.dim !== d) {
      throw new InvalidArgumentError(`example has hidden states [${h.layers}, ${h.tokens}, ${h.dim}], expected [${L1}, T, ${d}]`, { field: "hidden", offset: i });
    }
    if (h.tokens === 0) throw new InvalidArgumentError("example has no tokens", { field: "hidden", offset: i });
    T = Math.max(T, h.tokens);
  });
  const B = hs.length;
  const n = L1 * B * T * d;
  let x: FloatArray; // [L+1, B, T, d]
  if (scratch !== undefined && dtype === "f32") {
    if (scratch.buffer.length < n) scratch.buffer = new Float32Array(n);
    x = scratch.buffer.subarray(0, n);
    x.fill(0);
  } else x = dtype === "f64" ? new Float64Array(n) : new Float32Array(n);
  const mask = new Uint8Array(B * T); // [B, T]
  const lengths = new Int32Array(B); // [B]
  for (let b = 0; b < B; b++) {
    const h = hs[b];
    lengths[b] = h.tokens;
    mask.fill(1, b * T, b * T + h.tokens);
    for (let l = 0; l < L1; l++) x.set(h.layer(l), (l * B + b) * T * d);
  }
  return { layers: L1, batch: B, tokens: T, dim: d, x, mask, lengths };
}
