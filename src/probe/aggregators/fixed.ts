import type { Tape, Tensor } from "../../tensor/autograd.js";
import type { ProbeBatch } from "../../tensor/batch.js";
import { InvalidArgumentError } from "../../errors.js";
import type { AggregateOut, Aggregator } from "./types.js";

export type FixedToken = "last" | "mean" | "max";

/**
 * Baseline: one fixed layer l, and its last real token, the mean over real tokens, or the elementwise max over
 * them. The max fits "one token anywhere" tasks: a token whose state stands out in some dimension moves that
 * dimension of v however many tokens surround it (a mean or a gate dilutes it as 1/n).
 */
export class FixedAggregator implements Aggregator {
  readonly trainable = false;
  constructor(
    readonly layer: number,
    readonly token: FixedToken,
  ) {}
  params(): Map<string, Tensor> {
    return new Map();
  }
  parameterCount(): number {
    return 0;
  }
  async forward(tape: Tape, b: ProbeBatch): Promise<AggregateOut> {
    const B = b.batch, T = b.tokens, d = b.dim;
    if (!(this.layer >= 0 && this.layer < b.layers)) {
      throw new InvalidArgumentError(`fixed probe layer ${this.layer} is outside 0..${b.layers - 1}`, { field: "layer" });
    }
    const base = this.layer * B * T * d;
    const out = tape.alloc(B * d); // [B, d]
    for (let i = 0; i < B; i++) {
      const n = b.lengths[i];
      if (this.token === "last") {
        const row = base + (i * T + n - 1) * d;
        for (let j = 0; j < d; j++) out[i * d + j] = b.x[row + j];
      } else if (this.token === "max") {
        out.fill(-Infinity, i * d, (i + 1) * d);
        for (let t = 0; t < n; t++) {
          const row = base + (i * T + t) * d;
          for (let j = 0; j < d; j++) if (b.x[row + j] > out[i * d + j]) out[i * d + j] = b.x[row + j];
        }
      } else {
        for (let t = 0; t < n; t++) {
          const row = base + (i * T + t) * d;
          for (let j = 0; j < d; j++) out[i * d + j] += b.x[row + j];
        }
        for (let j = 0; j < d; j++) out[i * d + j] /= n;
      }
    }
    return { v: tape.constant([B, d], out) };
  }
}
