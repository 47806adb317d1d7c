/**
 * The fixed-probe baselines: one layer × (last token | mean over tokens), the layer chosen on validation
 * among all L+1. Every layer's probe is trained with the default recipe on the same validation split.
 */
import type { FixedToken } from "../probe/aggregators/fixed.js";
import { trainProbe, withValidation, type ExampleSource, type TrainOptions, type TrainResult } from "../probe/train.js";

export interface BestLayerResult {
  best: TrainResult;
  layer: number;
  /** Validation loss and metric per layer 0..L. */
  layers: { layer: number; valLoss: number; valMetric: number }[];
}

/** Trains a fixed probe per layer and keeps the one with the lowest validation loss. */
export async function bestFixedLayer(train: ExampleSource, token: FixedToken, options: TrainOptions & { classes?: number } = {}, onLayer?: (l: number, of: number) => void): Promise<BestLayerResult> {
  const seed = options.seed ?? 0;
  const { train: trainSet, validation } = withValidation(train, options, seed);
  const L1 = trainSet.get(0).layers;
  let best: TrainResult | undefined, layer = 0;
  const layers: BestLayerResult["layers"] = [];
  for (let l = 0; l < L1; l++) {
    const r = await trainProbe({ kind: "fixed", layer: l, token }, trainSet, { ...options, validation, seed });
    layers.push({ layer: l, valLoss: r.valLoss, valMetric: r.valMetric });
    if (best === undefined || r.valLoss < best.valLoss) { best = r; layer = l; }
    onLayer?.(l + 1, L1);
  }
  return { best: best!, layer, layers };
}
