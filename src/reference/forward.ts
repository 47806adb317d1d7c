/**
 * A plain TypeScript forward pass of the Llama-family decoder (llama, qwen2, qwen3), float64 arithmetic over
 * float32 weights, no KV cache. It exists to be read and to serve as the oracle in tests: slow on purpose.
 */
import { HiddenStates } from "../types/hidden.js";
import { InvalidArgumentError } from "../errors.js";
import { TensorNames, type ModelSpec, type WeightSource } from "../model/spec.js";
import { ropeInverseFrequencies } from "../graph/rope.js";

export interface ReferenceResult {
  /** [T, vocab] logits for every position. */
  logits: Float32Array;
  /** [L+1, T, d]: embeddings, after each block, last after the final norm. */
  hidden: HiddenStates;
}

/** x·Wᵀ (+b) for each of the T rows of x. x [T, inDim], W [outDim, inDim] → [T, outDim]. */
function linear(x: Float64Array, T: number, inDim: number, w: Float32Array, outDim: number, b?: Float32Array): Float64Array {
  const y = new Float64Array(T * outDim); // [T, outDim]
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < outDim; o++) {
      let s = b !== undefined ? b[o] : 0;
      const wo = o * inDim;
      const xt = t * inDim;
      for (let i = 0; i < inDim; i++) s += x[xt + i] * w[wo + i];
      y[t * outDim + o] = s;
    }
  }
  return y;
}

/** RMSNorm over consecutive groups of `width` values. x [n*width] → [n*width]. */
function rmsNorm(x: Float64Array, width: number, weight: Float32Array, eps: number): Float64Array {
  const y = new Float64Array(x.length); // same shape as x
  for (let off = 0; off < x.length; off += width) {
    let ss = 0;
    for (let i = 0; i < width; i++) ss += x[off + i] * x[off + i];
    const r = 1 / Math.sqrt(ss / width + eps);
    for (let i = 0; i < width; i++) y[off + i] = x[off + i] * r * weight[i];
  }
  return y;
}

/** Rotates every head of x [T, nHeads, headDim] in place, positions pos0 + t. */
function applyRope(x: Float64Array, T: number, nHeads: number, spec: ModelSpec, inv: Float64Array, pos0: number): void {
  const hd = spec.headDim;
  const half = spec.ropeDim / 2;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const base = (t * nHeads + h) * hd;
      for (let i = 0; i < half; i++) {
        const a = (pos0 + t) * inv[i];
        const c = Math.cos(a);
        const s = Math.sin(a);
        // interleaved pairs (2i, 2i+1); half pairs (i, i + rotDim/2)
        const i0 = spec.ropeStyle === "interleaved" ? base + 2 * i : base + i;
        const i1 = spec.ropeStyle === "interleaved" ? base + 2 * i + 1 : base + i + half;
        const x0 = x[i0];
        const x1 = x[i1];
        x[i0] = x0 * c - x1 * s;
        x[i1] = x0 * s + x1 * c;
      }
    }
  }
}

/** Runs the whole decoder over `tokens` (positions 0..T-1). */
export function referenceForward(spec: ModelSpec, weights: WeightSource, tokens: readonly number[]): ReferenceResult {
  const T = tokens.length;
  const d = spec.dim;
  const L = spec.blocks;
  const hd = spec.headDim;
  const H = spec.heads;
  const KV = spec.kvHeads;
  const group = H / KV;
  if (T === 0) throw new InvalidArgumentError("referenceForward needs at least one token", { field: "tokens" });
  const inv = ropeInverseFrequencies(spec);

  const hidden = new Float32Array((L + 1) * T * d); // [L+1, T, d]
  const embd = weights.readF32(TensorNames.tokenEmbedding); // [vocab, d]
  let x: Float64Array = new Float64Array(T * d); // [T, d] residual stream
  for (let t = 0; t < T; t++) {
    const id = tokens[t];
    if (!Number.isInteger(id) || id < 0 || id >= spec.vocabSize) {
      throw new InvalidArgumentError(`token id ${id} outside [0, ${spec.vocabSize})`, { field: "tokens", offset: t });
    }
    for (let i = 0; i < d; i++) x[t * d + i] = embd[id * d + i];
  }
  hidden.set(x, 0);

  for (let l = 0; l < L; l++) {
    const n = TensorNames.block(l);
    const bias = (name: string) => (spec.qkvBias && weights.has(name) ? weights.readF32(name) : undefined);
    // attention
    const h = rmsNorm(x, d, weights.readF32(n.attnNorm), spec.rmsNormEps); // [T, d]
    let q = linear(h, T, d, weights.readF32(n.q), H * hd, bias(n.qBias)); // [T, H*hd]
    let k = linear(h, T, d, weights.readF32(n.k), KV * hd, bias(n.kBias)); // [T, KV*hd]
    const v = linear(h, T, d, weights.readF32(n.v), KV * hd, bias(n.vBias)); // [T, KV*hd]
    if (spec.qkNorm) {
      q = rmsNorm(q, hd, weights.readF32(n.qNorm), spec.rmsNormEps);
      k = rmsNorm(k, hd, weights.readF32(n.kNorm), spec.rmsNormEps);
    }
    applyRope(q, T, H, spec, inv, 0);
    applyRope(k, T, KV, spec, inv, 0);
    const att = new Float64Array(T * H * hd); // [T, H*hd]
    const scores = new Float64Array(T); // [T] one query row
    const scale = 1 / Math.sqrt(hd);
    for (let head = 0; head < H; head++) {
      const kvh = Math.floor(head / group);
      for (let t = 0; t < T; t++) {
        let max = -Infinity;
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += q[(t * H + head) * hd + i] * k[(s * KV + kvh) * hd + i];
          scores[s] = dot * scale;
          if (scores[s] > max) max = scores[s];
        }
        let sum = 0;
        for (let s = 0; s <= t; s++) {
          scores[s] = Math.exp(scores[s] - max);
          sum += scores[s];
        }
        for (let i = 0; i < hd; i++) {
          let acc = 0;
          for (let s = 0; s <= t; s++) acc += scores[s] * v[(s * KV + kvh) * hd + i];
          att[(t * H + head) * hd + i] = acc / sum;
        }
      }
    }
    const o = linear(att, T, H * hd, weights.readF32(n.o), d); // [T, d]
    for (let i = 0; i < x.length; i++) x[i] += o[i]; // residual

    // feed-forward (SwiGLU)
    const h2 = rmsNorm(x, d, weights.readF32(n.ffnNorm), spec.rmsNormEps); // [T, d]
    const gate = linear(h2, T, d, weights.readF32(n.gate), spec.ffnDim); // [T, ffn]
    const up = linear(h2, T, d, weights.readF32(n.up), spec.ffnDim); // [T, ffn]
    for (let i = 0; i < gate.length; i++) gate[i] = (gate[i] / (1 + Math.exp(-gate[i]))) * up[i];
    const down = linear(gate, T, spec.ffnDim, weights.readF32(n.down), d); // [T, d]
    for (let i = 0; i < x.length; i++) x[i] += down[i]; // residual

    if (l < L - 1) hidden.set(x, (l + 1) * T * d);
  }
  x = rmsNorm(x, d, weights.readF32(TensorNames.outputNorm), spec.rmsNormEps);
  hidden.set(x, L * T * d);

  const head = weights.readF32(spec.tiedEmbeddings ? TensorNames.tokenEmbedding : TensorNames.output); // [vocab, d]
  const logits = Float32Array.from(linear(x, T, d, head, spec.vocabSize)); // [T, vocab]
  return { logits, hidden: new HiddenStates(L + 1, T, d, hidden) };
}
