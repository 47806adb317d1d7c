/**
 * The prompt's hidden states in the Hugging Face `output_hidden_states` convention: layer 0 is the token
 * embedding output, layer l (1..L-1) the residual stream after block l, and layer L the output of block L
 * after the final RMSNorm. This is the contract between the engine and every probe.
 */
export class HiddenStates {
  /**
   * @param layers L + 1
   * @param tokens T
   * @param dim d
   * @param data [layers, tokens, dim] layer-major
   */
  constructor(
    readonly layers: number,
    readonly tokens: number,
    readonly dim: number,
    readonly data: Float32Array,
  ) {
    if (data.length !== layers * tokens * dim) {
      throw new RangeError(`HiddenStates: data has ${data.length} values, expected ${layers}×${tokens}×${dim}`);
    }
  }

  /** View (no copy) of one layer: [tokens, dim]. */
  layer(l: number): Float32Array {
    const n = this.tokens * this.dim;
    return this.data.subarray(l * n, (l + 1) * n);
  }

  /** View (no copy) of one token's state in one layer: [dim]. */
  token(l: number, t: number): Float32Array {
    const off = (l * this.tokens + t) * this.dim;
    return this.data.subarray(off, off + this.dim);
  }

  /** Copy of tokens [start, end) of every layer: [layers, end - start, dim]. */
  sliceTokens(start: number, end: number): HiddenStates {
    const t = end - start;
    const out = new Float32Array(this.layers * t * this.dim);
    for (let l = 0; l < this.layers; l++) {
      out.set(this.data.subarray((l * this.tokens + start) * this.dim, (l * this.tokens + end) * this.dim), l * t * this.dim);
    }
    return new HiddenStates(this.layers, t, this.dim, out);
  }
}

/**
 * Layer-major parts [layers, T_i, width] joined along the token axis: [layers, ΣT_i, width] (the pieces of one
 * prompt's hidden states, or of per-token projections, run after another).
 */
export function concatTokens(parts: readonly { data: Float32Array; tokens: number }[], layers: number, width: number): Float32Array {
  const T = parts.reduce((a, p) => a + p.tokens, 0);
  const out = new Float32Array(layers * T * width); // [layers, ΣT, width]
  let t0 = 0;
  for (const p of parts) {
    for (let l = 0; l < layers; l++) out.set(p.data.subarray(l * p.tokens * width, (l + 1) * p.tokens * width), (l * T + t0) * width);
    t0 += p.tokens;
  }
  return out;
}
