import type { Tape, Tensor } from "../../tensor/autograd.js";
import type { ProbeBatch } from "../../tensor/batch.js";

/** What an aggregator returns for a batch: one vector per prompt, and the layer gate where there is one. */
export interface AggregateOut {
  /** [B, d] */
  v: Tensor;
  /** [B, L+1] softmax weights of the layer stage, when the aggregator has a layer gate. */
  layerWeights?: Tensor;
}

/**
 * Stage 1 (per layer, over tokens) and stage 2 (over the L+1 layer summaries), fused: H [L+1, B, T, d] → [B, d].
 */
export interface Aggregator {
  /** False when the aggregator has no parameters: training can then precompute its output once. */
  readonly trainable: boolean;
  /** Named parameters (empty for pooling/fixed). */
  params(): Map<string, Tensor>;
  forward(tape: Tape, batch: ProbeBatch): Promise<AggregateOut>;
  /** Parameters of the aggregator alone (the paper's formulas exclude the head). */
  parameterCount(): number;
}

/** The x of a batch as a tape constant [L+1, B, T, d]. */
export function batchInput(tape: Tape, b: ProbeBatch): Tensor {
  return tape.constant([b.layers, b.batch, b.tokens, b.dim], b.x);
}
