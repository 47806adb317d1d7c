// Synthetic hidden states for probe tests (not a test file itself).
import { HiddenStates } from "../src/types/hidden.js";
import { Rng } from "../src/numeric/rng.js";

export interface PlantedTask {
  hidden: HiddenStates[];
  labels: number[];
}

/**
 * The label lives in one layer at one token position: that token carries a marker (+m on dim 0) and the
 * class signal ±mu on dim 1; every other value is N(0, 1) noise. Lengths vary in [minT, maxT].
 */
export function plantedTask(n: number, o: { layers: number; dim: number; layer: number; position: number; minT?: number; maxT?: number; seed?: number; mu?: number; marker?: number }): PlantedTask {
  const rng = new Rng(o.seed ?? 1);
  const minT = o.minT ?? 6, maxT = o.maxT ?? 10;
  const hidden: HiddenStates[] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const T = minT + rng.int(maxT - minT + 1);
    const y = i % 2;
    const data = Float32Array.from({ length: o.layers * T * o.dim }, () => rng.normal()); // [L+1, T, d]
    const h = new HiddenStates(o.layers, T, o.dim, data);
    const tok = h.token(o.layer, o.position);
    tok[0] += o.marker ?? 4;
    tok[1] += (y === 1 ? 1 : -1) * (o.mu ?? 6);
    hidden.push(h);
    labels.push(y);
  }
  return { hidden, labels };
}
