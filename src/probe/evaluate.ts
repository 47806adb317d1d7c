/**
 * Evaluation of a probe on labelled examples: every example through the probe (batched), then the metrics.
 */
import type { Probe } from "./probe.js";
import { evaluate, predictClasses, type MetricReport } from "./metrics.js";
import { lengthOrder, type ExampleSource } from "./train.js";

export interface Evaluation {
  metrics: MetricReport;
  /** [N, C] */
  probs: Float32Array;
  /** [N] */
  labels: Int32Array;
  /** [N] predicted class (threshold applied for binary tasks). */
  preds: Int32Array;
  /** [C][L+1] mean layer-gate weights over the examples of each true class (scoring probes only). */
  layerWeightsByClass?: number[][];
  /** Mean layer-gate weights [L+1] over correctly and incorrectly predicted examples (scoring probes only). */
  layerWeightsByOutcome?: { correct: number[]; incorrect: number[] };
}

/** Runs the probe over every example (batched) and scores it. */
export async function evaluateProbe(probe: Probe, src: ExampleSource, options: { threshold?: number; batchSize?: number; onProgress?: (done: number) => void } = {}): Promise<Evaluation> {
  const C = probe.shape.classes, L1 = probe.shape.layers, bs = options.batchSize ?? 32;
  const probs = new Float32Array(src.size * C); // [N, C]
  const labels = Int32Array.from({ length: src.size }, (_, i) => src.labels[i]); // [N]
  const gateSums = probe.config.kind === "scoring" ? Array.from({ length: C }, () => new Float64Array(L1)) : undefined; // [C][L+1]
  const gateRows = gateSums !== undefined ? new Float32Array(src.size * L1) : undefined; // [N, L+1]
  const counts = new Array<number>(C).fill(0); // [C] examples per true class
  const order = lengthOrder(src);
  for (let s = 0; s < src.size; s += bs) {
    const idx = order.slice(s, s + bs);
    const hs = idx.map((i) => src.get(i)); // HiddenStates [L+1, T_i, d] each
    const { probabilities, layerWeights } = await probe.run(hs);
    idx.forEach((i, r) => {
      probs.set(probabilities.subarray(r * C, (r + 1) * C), i * C);
      counts[labels[i]]++;
      if (gateRows !== undefined && layerWeights !== undefined) {
        gateRows.set(layerWeights.subarray(r * L1, (r + 1) * L1), i * L1);
        if (gateSums !== undefined) for (let l = 0; l < L1; l++) gateSums[labels[i]][l] += layerWeights[r * L1 + l];
      }
    });
    options.onProgress?.(s + idx.length);
  }
  const metrics = evaluate(labels, probs, C, options.threshold);
  const preds = predictClasses(probs, C, options.threshold); // [N]
  const layerWeightsByClass = gateSums?.map((row, c) => Array.from(row, (v) => (counts[c] > 0 ? v / counts[c] : 0)));
  let layerWeightsByOutcome: Evaluation["layerWeightsByOutcome"];
  if (gateRows !== undefined) {
    // The paper's layer analysis: where the gate looks when the probe is right vs wrong.
    const sum = [new Float64Array(L1), new Float64Array(L1)], n = [0, 0]; // [2][L+1]: 0 correct, 1 incorrect
    for (let i = 0; i < src.size; i++) {
      const k = preds[i] === labels[i] ? 0 : 1;
      n[k]++;
      for (let l = 0; l < L1; l++) sum[k][l] += gateRows[i * L1 + l];
    }
    const mean = (k: number) => Array.from(sum[k], (v) => (n[k] > 0 ? v / n[k] : 0));
    layerWeightsByOutcome = { correct: mean(0), incorrect: mean(1) };
  }
  return { metrics, probs, labels, preds, layerWeightsByClass, layerWeightsByOutcome };
}
