/**
 * The fixed-probe baselines: one layer × (last token | mean over tokens), the layer chosen on validation
 * among all L+1. Every layer's probe is trained with the default recipe on the same split; layers are compared
 * by the cross-validated loss of their exact head (the validation split's loss when there is none).
 */
import type { FixedToken } from "../probe/aggregators/fixed.js";
import { trainProbe, withValidation, type ExampleSource, type TrainOptions, type TrainResult } from "../probe/train.js";

export interface BestLayerResult {
  best: TrainResult;
  layer: number;
  /** Selection loss (cross-validated when available), validation loss and metric per layer 0..L. */
  layers: { layer: number; selectionLoss: number; valLoss: number; valMetric: number }[];
}

/** Trains a fixed probe per layer and keeps the one with the lowest selection loss. */
export async function bestFixedLayer(train: ExampleSource, token: FixedToken, options: TrainOptions & { classes?: number } = {}, onLayer?: (l: number, of: number) => void): Promise<BestLayerResult> {
  const seed = options.seed ?? 0;
  const { train: trainSet, validation } = withValidation(train, options, seed);
  const L1 = trainSet.get(0).layers;
  let best: TrainResult | undefined, bestLoss = Infinity, layer = 0;
  const layers: BestLayerResult["layers"] = [];
  for (let l = 0; l < L1; l++) {
    const r = await trainProbe({ kind: "fixed", layer: l, token }, trainSet, { ...options, validation, seed });
    const selectionLoss = r.cvLoss ?? r.valLoss;
    layers.push({ layer: l, selectionLoss, valLoss: r.valLoss, valMetric: r.valMetric });
    if (best === undefined || selectionLoss < bestLoss) { best = r; bestLoss = selectionLoss; layer = l; }
    onLayer?.(l + 1, L1);
  }
  return { best: best!, layer, layers };
}
