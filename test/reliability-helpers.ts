// Shared by reliability.test.ts and fuzz-cli.test.ts (not a test file itself).
import { extractFeatures, type HiddenStateSource } from "../src/data/features.js";
import { plantedTask } from "./probe-synthetic.js";

/** A small planted-signal feature cache (4 layers × d 16), `n` rows, classes alternating. */
export async function syntheticCache(dir: string, n = 60, seed = 3, labelNames = ["neg", "pos"], template: "raw" | "chat" = "raw"): Promise<void> {
  const task = plantedTask(n, { layers: 4, dim: 16, layer: 1, position: 0, seed });
  const byText = new Map(task.hidden.map((h, i) => [`prompt ${i}`, h]));
  const source: HiddenStateSource = {
    fingerprint: "model-A", layers: 4, dim: 16, tokenization: { addBos: true, template },
    async hidden(text) { return byText.get(text)!; },
  };
  const examples = task.labels.map((label, i) => ({ text: `prompt ${i}`, label }));
  await extractFeatures({ source, examples, labelNames, outDir: dir, mode: "full" });
}

