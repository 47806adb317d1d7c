import type { DType, RowMask, Tape, Tensor } from "../../tensor/autograd.js";
import { attention, pooledAttention } from "../../tensor/sdpa.js";
import type { ProbeBatch } from "../../tensor/batch.js";
import { InvalidArgumentError } from "../../errors.js";
import { newParam } from "../../tensor/params.js";
import type { Rng } from "../../numeric/rng.js";
import { batchInput, type AggregateOut, type Aggregator } from "./types.js";
import type { PoolKind } from "./pooling.js";

/** One downcast attention block's weights, for G independent groups (G = L+1 in stage 1, 1 in stage 2). */
interface BlockWeights {
  /** [G, d, d/f] */ q: Tensor;
  /** [G, d, d/f] */ k: Tensor;
  /** [G, d, d/f] */ v: Tensor;
  /** [G, d/f, d] */ o: Tensor;
}

/**
 * Downcast multi-head self-attention: Q, K, V: d → d/f, H heads of width d/(f·H), scaled dot-product attention
 * over the sequence (padding keys masked), heads concatenated, projected back to d, then mean|max over the
 * sequence. One block per layer (stage 1) and one over the L+1 summaries (stage 2): (L+2)·4·d·(d/f) parameters,
 * no biases. As in the paper: no positional encoding, causal mask, residual, norm or FFN.
 */
export class MhaAggregator implements Aggregator {
  readonly trainable = true;
  readonly inner: number;
  readonly tokenBlock: BlockWeights;
  readonly layerBlock: BlockWeights;
  constructor(
    readonly layers: number,
    readonly dim: number,
    readonly heads: number,
    readonly downcast: number,
    readonly pool: PoolKind,
    dtype: DType,
    rng: Rng,
  ) {
    this.inner = dim / downcast;
    if (!Number.isInteger(this.inner) || this.inner % heads !== 0 || this.inner === 0) {
      throw new InvalidArgumentError(`MHA probe: d=${dim} / f=${downcast} = ${dim / downcast} must be a positive multiple of heads=${heads}`, { field: "downcast" });
    }
    const block = (prefix: string, groups: number[]): BlockWeights => ({
      q: newParam(`${prefix}.q`, [...groups, dim, this.inner], dtype, rng, 1 / Math.sqrt(dim)),
      k: newParam(`${prefix}.k`, [...groups, dim, this.inner], dtype, rng, 1 / Math.sqrt(dim)),
      v: newParam(`${prefix}.v`, [...groups, dim, this.inner], dtype, rng, 1 / Math.sqrt(dim)),
      o: newParam(`${prefix}.o`, [...groups, this.inner, dim], dtype, rng, 1 / Math.sqrt(this.inner)),
    });
    this.tokenBlock = block("mha.token", [layers]);
    this.layerBlock = block("mha.layer", []);
  }
  params(): Map<string, Tensor> {
    const m = new Map<string, Tensor>();
    for (const b of [this.tokenBlock, this.layerBlock]) for (const t of [b.q, b.k, b.v, b.o]) m.set(t.name!, t);
    return m;
  }
  parameterCount(): number {
    let n = 0;
    for (const t of this.params().values()) n += t.size;
    return n;
  }

  /** x [G, B·T, d] → attention output pooled over T: [G·B, d]. */
  private async block(tape: Tape, x: Tensor, w: BlockWeights, G: number, B: number, T: number, mask?: Uint8Array): Promise<Tensor> {
    const H = this.heads, hd = this.inner / H, d = this.dim;
    const q = await tape.matmul(x, w.q), k = await tape.matmul(x, w.k), v = await tape.matmul(x, w.v); // [G, B·T, d/f] each
    if (this.pool === "mean") {
      // Mean pooling is linear, so pooling the heads' output before the projection back to d is exact and
      // d/(d/f) = f times cheaper: mean_t(o_t)·W_o = mean_t(o_t·W_o).
      const pooled = await pooledAttention(tape, q, k, v, { G, B, T, H, hd }, mask); // [G·B, d/f]
      return tape.reshape(await tape.matmul(tape.reshape(pooled, [G, B, this.inner]), w.o), [G * B, d]); // [G·B, d]
    }
    const ctx = await attention(tape, q, k, v, { G, B, T, H, hd }, mask); // [G, B, T, H, hd]
    const poolMask: RowMask | undefined = mask === undefined ? undefined : { mask, maskRows: B, rowsPerMask: 1 };
    const out = await tape.matmul(tape.reshape(ctx, [G, B * T, this.inner]), w.o); // [G, B·T, d]
    return tape.pool(tape.reshape(out, [G * B, T, d]), "max", poolMask); // [G·B, d]
  }

  async forward(tape: Tape, b: ProbeBatch): Promise<AggregateOut> {
    const L1 = b.layers, B = b.batch, T = b.tokens, d = b.dim;
    const x = tape.reshape(batchInput(tape, b), [L1, B * T, d]);
    const summaries = await this.block(tape, x, this.tokenBlock, L1, B, T, b.mask); // [(L+1)·B, d]
    const byPrompt = tape.permute(tape.reshape(summaries, [L1, B, d]), [1, 0, 2]); // [B, L+1, d]
    const v = await this.block(tape, tape.reshape(byPrompt, [1, B * L1, d]), this.layerBlock, 1, B, L1); // [B, d]
    return { v };
  }
}
