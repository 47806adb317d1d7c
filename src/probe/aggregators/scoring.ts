import type { DType, Tape, Tensor } from "../../tensor/autograd.js";
import type { ProbeBatch } from "../../tensor/batch.js";
import { newParam } from "../../tensor/params.js";
import type { Rng } from "../../numeric/rng.js";
import { batchInput, type AggregateOut, type Aggregator } from "./types.js";

/**
 * Scoring-attention gate: s_i = tanh(wᵀx_i), α = masked softmax(s), v = Σ α_i x_i. One w per layer over the
 * tokens, one shared w over the L+1 layer summaries: (L+2)·d parameters. Gates start at w = 0, i.e. as mean
 * pooling, and learn where to look.
 */
export class ScoringAggregator implements Aggregator {
  readonly trainable = true;
  /** [L+1, d, 1] */
  readonly tokenGate: Tensor;
  /** [d, 1] */
  readonly layerGate: Tensor;
  constructor(layers: number, dim: number, dtype: DType, rng?: Rng, initStd = 0) {
    this.tokenGate = newParam("scoring.token_gate", [layers, dim, 1], dtype, rng, initStd);
    this.layerGate = newParam("scoring.layer_gate", [dim, 1], dtype, rng, initStd);
  }
  params(): Map<string, Tensor> {
    return new Map([
      [this.tokenGate.name!, this.tokenGate],
      [this.layerGate.name!, this.layerGate],
    ]);
  }
  parameterCount(): number {
    return this.tokenGate.size + this.layerGate.size;
  }
  async forward(tape: Tape, b: ProbeBatch): Promise<AggregateOut> {
    const L1 = b.layers, B = b.batch, T = b.tokens, d = b.dim;
    const x = batchInput(tape, b); // [L+1, B, T, d]
    const scores = tape.tanh(await tape.matmul(tape.reshape(x, [L1, B * T, d]), this.tokenGate)); // [L+1, B·T, 1]
    const alpha = tape.softmax(tape.reshape(scores, [L1 * B, T]), { mask: b.mask, maskRows: B, rowsPerMask: 1 }); // [(L+1)·B, T]
    const summaries = await tape.matmul(tape.reshape(alpha, [L1 * B, 1, T]), tape.reshape(x, [L1 * B, T, d])); // [(L+1)·B, 1, d]
    const byPrompt = tape.permute(tape.reshape(summaries, [L1, B, d]), [1, 0, 2]); // [B, L+1, d]
    const layerScores = tape.tanh(await tape.matmul(byPrompt, this.layerGate)); // [B, L+1, 1]
    const beta = tape.softmax(tape.reshape(layerScores, [B, L1])); // [B, L+1]
    const v = await tape.matmul(tape.reshape(beta, [B, 1, L1]), byPrompt); // [B, 1, d]
    return { v: tape.reshape(v, [B, d]), layerWeights: beta };
  }
}
