// BeaverTails response harm on the built-in model: a response probe (trained on the response tokens' states of
// one pass over prompt + response, as `extract --target response` stores them) against a prompt-only probe
// (the prompt's states), both judged on the RESPONSE harm labels.
// Split (documented): the preset `beavertails-response` (GuardReasoner copy of BeaverTails 30k_test, 3,021 rows)
// cut to its first --limit rows, then a seeded stratified split: 30% test (stratifiedSplit seed 0), the rest
// train (its own seeded 10% validation inside trainProbe picks the epoch and the threshold).
// Usage: npm run bench:response [-- --limit N --max-tokens N --epochs N]
import { loadPreset } from "../src/data/datasets.js";
import { engineSource } from "../src/data/source.js";
import { Engine } from "../src/engine/engine.js";
import type { HiddenStates } from "../src/types/hidden.js";
import { ProgressBar } from "../src/cli/progress.js";
import { evaluate } from "../src/probe/metrics.js";
import type { ProbeConfig } from "../src/probe/probe.js";
import { arraySource, predictSource, stratifiedSplit, subset, trainProbe } from "../src/probe/train.js";
import { arg } from "./common.js";

const LIMIT = arg("limit", 1500);
const MAX_TOKENS = arg("max-tokens", 96);
const EPOCHS = arg("epochs", 10);

async function main(): Promise<void> {
  const ds = await loadPreset("beavertails-response", { limit: LIMIT });
  const engine = await Engine.load(undefined, { taps: true });
  const source = engineSource(engine, { template: engine.tokenizer.chatTemplate !== undefined ? "chat" : "raw" });
  const prompts: HiddenStates[] = [];
  const responses: HiddenStates[] = [];
  const bar = new ProgressBar({ total: ds.examples.length, label: "extract", unit: "ex" });
  for (const [i, ex] of ds.examples.entries()) {
    prompts.push(await source.hidden(ex.text, { maxTokens: MAX_TOKENS }).then((h) => (h.tokens > MAX_TOKENS ? h.sliceTokens(0, MAX_TOKENS) : h)));
    responses.push(await source.hidden(ex.text, { maxTokens: MAX_TOKENS, response: ex.response! }));
    bar.update(i + 1);
  }
  bar.finish();
  await engine.dispose();
  const labels = ds.examples.map((e) => e.label);
  const { train, val: test } = stratifiedSplit(labels, 0.3, 0);
  const pos = (idx: number[]) => idx.filter((i) => labels[i] === 1).length;
  console.log(`BeaverTails response harm, stories260K (L=${engine.spec.blocks}, d=${engine.spec.dim}), template ${source.tokenization.template}: ` +
    `${ds.examples.length} rows, train ${train.length} (${pos(train)} harmful), test ${test.length} (${pos(test)} harmful); first ${MAX_TOKENS} tokens of prompt / response`);
  console.log(`${"probe".padEnd(28)} ${"test F1".padStart(8)} ${"AUPRC".padStart(7)} ${"acc".padStart(7)}`);
  const configs: [string, ProbeConfig, number][] = [["pooling mean", { kind: "pooling", pool: "mean" }, 3e-2], ["scoring", { kind: "scoring" }, 3e-2]];
  for (const [name, config, lr] of configs) {
    for (const [what, hs] of [["prompt-only", prompts], ["response", responses]] as const) {
      const all = arraySource(hs, labels);
      const r = await trainProbe(config, subset(all, train), { lr, epochs: EPOCHS, batchSize: 32, seed: 0, metric: "f1" });
      const probs = await predictSource(r.probe, subset(all, test));
      const m = evaluate(test.map((i) => labels[i]), probs, 2, r.threshold);
      console.log(`${`${what} ${name}`.padEnd(28)} ${m.f1!.toFixed(4).padStart(8)} ${m.auprc!.toFixed(4).padStart(7)} ${m.accuracy.toFixed(4).padStart(7)}`);
    }
  }
  console.log(`always "harmful" on test: accuracy ${(pos(test) / test.length).toFixed(4)}, F1 ${((2 * pos(test)) / (test.length + pos(test))).toFixed(4)}, AUPRC = base rate ${(pos(test) / test.length).toFixed(4)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
