import type { Tape, Tensor } from "../../tensor/autograd.js";
import type { ProbeBatch } from "../../tensor/batch.js";
import { batchInput, type AggregateOut, type Aggregator } from "./types.js";

export type PoolKind = "mean" | "max";

/** Pooling aggregator: masked mean|max over each layer's tokens, then the same pooling over the L+1 layers. */
export class PoolingAggregator implements Aggregator {
  readonly trainable = false;
  constructor(readonly pool: PoolKind) {}
  params(): Map<string, Tensor> {
    return new Map();
  }
  parameterCount(): number {
    return 0;
  }
  async forward(tape: Tape, b: ProbeBatch): Promise<AggregateOut> {
    const L1 = b.layers, B = b.batch, T = b.tokens, d = b.dim;
    const x = tape.reshape(batchInput(tape, b), [L1 * B, T, d]);
    const perLayer = tape.pool(x, this.pool, { mask: b.mask, maskRows: B, rowsPerMask: 1 }); // [(L+1)·B, d]
    const byPrompt = tape.permute(tape.reshape(perLayer, [L1, B, d]), [1, 0, 2]); // [B, L+1, d]
    return { v: tape.pool(byPrompt, this.pool) }; // [B, d]
  }
}

