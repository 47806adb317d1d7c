/**
 * The paper's cost table on this machine, per request, batch 1, prompt cut at 512 tokens, one new token: the
 * serving model alone (base), with a pooling / scoring / MHA probe on its prefill, and guard-then-serve (a
 * guard model runs over the whole prompt first, then the serving model) with each guard. Median and p95 ms per
 * sample, ratio of medians to base, and the paired ratio: the median over samples of each sample's time over the
 * base's on the same prompt in the same turn (prompt lengths vary widely, so the median of one variant's times can
 * fall on a different prompt than the base's). Probe and guard weights are random: they cost what trained ones do.
 * Library API of `onepass bench cost` (and of `npm run bench:cost`).
 *
 * Prompts: ToxicChat's human-annotated test prompts, a documented stride sample — every ⌊2853 / samples⌋-th
 * prompt in file order.
 */
import { basename } from "node:path";
import { cpus } from "node:os";
import { Engine, type EngineOptions } from "../engine/engine.js";
import { loadPreset } from "../data/datasets.js";
import { generateWithProbes } from "../probe/live.js";
import type { ProbeConfig } from "../probe/probe.js";
import { defaultModelPath } from "../model/load.js";
import { InvalidArgumentError } from "../errors.js";
import { ensureLlama1bShapedModel, ensureQwenShapedModel, randomBenchModel, randomLoadedProbe } from "./models.js";
import type { BenchProgress } from "./quality.js";

export interface CostRow {
  setup: string;
  variant: string;
  medianMs: number;
  p95Ms: number;
  /** medianMs / the base's medianMs */
  ratio: number;
  /** median over samples of ms / the base's ms on the same prompt and turn */
  pairedRatio: number;
  /** ms per sample, in prompt order, run after run */
  samplesMs: number[];
  params?: number;
}
export interface CostResults { machine: string; samples: number; runs: number; maxLength: number; peakRssMiB: number; wallSeconds: number; rows: CostRow[] }

export interface CostSetup {
  /** Row label of the setup. */
  name: string;
  serving: string;
  guards: { name: string; path: string }[];
  /** The MHA probe's downcast factor f (d / f per head), sized for the model. */
  mhaDowncast: number;
}

export interface CostBenchOptions {
  /** The serving model (default the built-in stories260K). */
  model?: string;
  /** Guard models (default: the serving model itself, equal size; for the built-in model also a random model of its shape with 3× the layers). */
  guards?: readonly string[];
  /** Add the Qwen2.5-0.5B-shaped setup with Qwen2.5-0.5B- and Llama-3.2-1B-shaped guards (random weights, several GiB of RAM). */
  qwen?: boolean;
  dataDir?: string;
  /** Prompts (default 40). */
  samples?: number;
  /** Passes over the prompts (default 1). */
  runs?: number;
  /** Prompt tokens kept (default 512). */
  maxLength?: number;
  engine?: EngineOptions;
  onProgress?: (p: BenchProgress) => void;
}

const quantile = (xs: number[], q: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };

/** Times every variant of one setup on `texts`; variants take turns on each prompt, so outside load hits them alike. */
export async function benchCostSetup(setup: CostSetup, texts: readonly string[], o: Pick<CostBenchOptions, "runs" | "maxLength" | "engine" | "onProgress"> = {}): Promise<CostRow[]> {
  const runs = o.runs ?? 1, maxLength = o.maxLength ?? 512;
  if (texts.length === 0) throw new InvalidArgumentError("no prompts to time", { field: "--samples" });
  // Several engines take turns in this one process, each with its own ORT thread pool. A pool that spin-waits
  // after its run takes the cores from the next engine: on stories260K (prefills of ~2 ms) that turned every probe
  // variant into ~2.5× base. A server runs one engine, so spinning is off here unless `engine` says otherwise.
  const engineOptions = { allowSpinning: false, ...o.engine };
  const plain = await Engine.load(setup.serving, { ...engineOptions, taps: false });
  const tapped = await Engine.load(setup.serving, { ...engineOptions, taps: true });
  const guardEngines: Engine[] = [];
  try {
    for (const g of setup.guards) guardEngines.push(await Engine.load(g.path, { ...engineOptions, taps: false }));
    const cut = (e: Engine, t: string) => e.promptTokens({ prompt: t }).slice(0, maxLength);
    const probeConfigs: [string, ProbeConfig][] = [["+ pooling probe", { kind: "pooling" }], ["+ scoring probe", { kind: "scoring" }], [`+ MHA probe (H=4, f=${setup.mhaDowncast})`, { kind: "mha", heads: 4, downcast: setup.mhaDowncast }]];
    const probes = probeConfigs.map(([, c]) => randomLoadedProbe(tapped, c));
    const one = { maxTokens: 1, temperature: 0, eosTokenIds: [] as number[] };
    const variants: { name: string; run: (t: string) => Promise<unknown>; params?: number }[] = [
      { name: "base (prefill + 1 token)", run: (t) => plain.generate({ ...one, prompt: cut(plain, t) }).result },
      ...probeConfigs.map(([name], i) => ({ name, params: probes[i].probe.parameterCount({ includeHead: true }), run: (t: string) => generateWithProbes(tapped, { ...one, prompt: cut(tapped, t) }, [probes[i]]).generation.result })),
      ...setup.guards.map((g, i) => ({ name: `guard-then-serve, ${g.name}`, run: async (t: string) => { await guardEngines[i].generate({ ...one, prompt: cut(guardEngines[i], t) }).result; return plain.generate({ ...one, prompt: cut(plain, t) }).result; } })),
    ];
    const times: number[][] = variants.map(() => []); // [variant][sample] ms
    for (const v of variants) await v.run(texts[0]); // warm-up of every session
    const stage = `cost ${setup.name}`;
    for (let r = 0; r < runs; r++) for (let k = 0; k < texts.length; k++) {
      for (let v = 0; v < variants.length; v++) {
        const t0 = performance.now();
        await variants[v].run(texts[k]);
        times[v].push(performance.now() - t0);
      }
      o.onProgress?.({ stage, done: r * texts.length + k + 1, total: runs * texts.length, unit: "prompt" });
    }
    const base = quantile(times[0], 0.5);
    return variants.map((v, i) => ({
      setup: setup.name, variant: v.name, medianMs: quantile(times[i], 0.5), p95Ms: quantile(times[i], 0.95), ratio: quantile(times[i], 0.5) / base,
      pairedRatio: quantile(times[i].map((t, k) => t / times[0][k]), 0.5), samplesMs: times[i], ...(v.params !== undefined ? { params: v.params } : {}),
    }));
  } finally {
    await plain.dispose(); await tapped.dispose();
    for (const g of guardEngines) await g.dispose();
  }
}

/** The ToxicChat test prompts the cost table uses: every ⌊N / samples⌋-th of the human-annotated test split. */
export async function costPrompts(dataDir: string | undefined, samples: number): Promise<{ texts: string[]; stride: number; of: number }> {
  const ds = await loadPreset("toxicchat", { split: "test", dataDir });
  const stride = Math.max(1, Math.floor(ds.examples.length / samples));
  return { texts: ds.examples.filter((_, i) => i % stride === 0).slice(0, samples).map((e) => e.text), stride, of: ds.examples.length };
}

/** The whole cost table: the serving model's setup (and the Qwen-shaped one with `qwen`). */
export async function runCostBench(o: CostBenchOptions = {}): Promise<{ results: CostResults; markdown: string }> {
  const samples = o.samples ?? 40, runs = o.runs ?? 1, maxLength = o.maxLength ?? 512;
  const t0 = performance.now();
  const prompts = await costPrompts(o.dataDir, samples);
  const serving = o.model ?? defaultModelPath();
  const name = o.model === undefined ? "stories260K" : basename(o.model);
  let guards: CostSetup["guards"];
  if (o.guards !== undefined && o.guards.length > 0) guards = o.guards.map((g) => ({ name: g === serving ? `equal size (${basename(g)})` : basename(g), path: g }));
  else {
    guards = [{ name: `equal size (${name})`, path: serving }];
    if (o.model === undefined) {
      // stories260K: d 64, 5 blocks, 8/4 heads, FFN 172, vocab 512; the larger guard has 3× its blocks.
      guards.push({ name: "3× layers (random, stories shape)", path: randomBenchModel("stories-shape-x3-layers.gguf", { architecture: "llama", blocks: 15, dim: 64, heads: 8, kvHeads: 4, ffnDim: 172, vocabSize: 512, dtype: "f32", seed: 7, tokenizer: `copy-from:${serving}`, contextLength: 1024, name: "random stories260K shape ×3 layers" }) });
    }
  }
  const rows: CostRow[] = [];
  const so = { runs, maxLength, engine: o.engine, onProgress: o.onProgress };
  rows.push(...await benchCostSetup({ name, serving, guards, mhaDowncast: 8 }, prompts.texts, so));
  if (o.qwen === true) {
    const qwen = ensureQwenShapedModel();
    rows.push(...await benchCostSetup({ name: "Qwen2.5-0.5B shape (random)", serving: qwen, guards: [{ name: "Qwen2.5-0.5B shape", path: qwen }, { name: "Llama-3.2-1B shape", path: ensureLlama1bShapedModel() }], mhaDowncast: 32 }, prompts.texts, so));
  }
  const results: CostResults = { machine: `${cpus().length}× ${cpus()[0]?.model ?? "?"}`, samples: prompts.texts.length, runs, maxLength, peakRssMiB: process.resourceUsage().maxRSS / 1024, wallSeconds: (performance.now() - t0) / 1000, rows };
  return { results, markdown: costMarkdown(results, prompts) };
}

/** The cost table as Markdown, with the paper's ratios beside it. */
export function costMarkdown(c: CostResults, prompts?: { stride: number; of: number }): string {
  const which = prompts !== undefined ? `every ${prompts.stride}th of ${prompts.of}, ` : "";
  return [`Cost per request (batch 1, ToxicChat test prompts: ${which}${c.samples} prompts × ${c.runs} run(s), cut at ${c.maxLength} tokens, one new token). ${c.machine}; process peak RSS ${c.peakRssMiB.toFixed(0)} MiB with every engine loaded; wall ${c.wallSeconds.toFixed(0)} s.`, "",
    "| setup | variant | median ms | p95 ms | ratio to base | paired ratio |", "|---|---|---|---|---|---|",
    ...c.rows.map((r) => `| ${r.setup} | ${r.variant} | ${r.medianMs.toFixed(2)} | ${r.p95Ms.toFixed(2)} | ${r.ratio.toFixed(2)} | ${r.pairedRatio.toFixed(2)} |`),
    "", "Paper (Llama-3.2-3B, GPU): pooling 1.12, scoring 1.17, MHA 1.52; guard-then-serve 3.34–4.66.", ""].join("\n");
}
