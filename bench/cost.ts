// The paper's cost table on this machine: per request, batch 1, prompt cut at 512 tokens, one new token —
// the serving model alone (base), with a pooling / scoring / MHA probe on its prefill, and guard-then-serve
// (a guard model runs over the whole prompt first, then the serving model) with a guard of equal size and
// one 2–3× larger. Median and p95 ms per sample, ratio to base. Probe and guard weights are random: they
// cost what trained ones do.
//
//   node dist/bench/cost.js [--data-dir D] [--samples 40] [--runs 1] [--qwen] [--out results]
//
// Prompts: ToxicChat's human-annotated test prompts, a documented stride sample — every ⌊2853 / samples⌋-th
// prompt in file order — so a run takes minutes on 2 cores. --qwen adds random-weight models of
// Qwen2.5-0.5B shape (serving) with Qwen2.5-0.5B- and Llama-3.2-1B-shaped guards (several GiB of RAM).
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { cpus, homedir } from "node:os";
import { Engine } from "../src/engine/engine.js";
import { loadPreset } from "../src/data/datasets.js";
import type { LoadedProbe } from "../src/probe/artifact.js";
import { generateWithProbes } from "../src/probe/live.js";
import { Probe, type ProbeConfig } from "../src/probe/probe.js";
import { writeRandomModel, type RandomModelOptions } from "../src/model/gguf/writer.js";
import { writeFileAtomic } from "../src/util/atomic.js";
import { ProgressBar } from "../src/cli/progress.js";
import { arg, ensureQwenShapedModel } from "./common.js";

const str = (name: string, fallback: string) => { const i = process.argv.indexOf(`--${name}`); return i >= 0 ? process.argv[i + 1] : fallback; };
const dataDir = str("data-dir", process.env.ONEPASS_DATA_DIR ?? "../shared/data");
const SAMPLES = arg("samples", 40);
const RUNS = arg("runs", 1);
const MAX_LEN = 512;
const out = str("out", "results");
const benchDir = join(process.env.ONEPASS_CACHE_DIR ?? join(homedir(), ".cache", "onepass"), "bench");

function randomModel(file: string, o: RandomModelOptions): string {
  const path = join(benchDir, file);
  if (!existsSync(path)) { mkdirSync(benchDir, { recursive: true }); writeRandomModel(path, o); }
  return path;
}

function randomProbe(engine: Engine, config: ProbeConfig): LoadedProbe {
  const shape = { layers: engine.spec.blocks + 1, dim: engine.spec.dim, classes: 2 };
  const probe = new Probe(config, shape, { seed: 1 });
  for (const t of probe.params().values()) for (let i = 0; i < t.data.length; i++) t.data[i] = (Math.sin(i * 12.9898) * 0.5) / Math.sqrt(shape.dim);
  return {
    probe, dir: `bench-${config.kind}`,
    meta: { format: "onepass-probe", version: 1, config, shape, labelNames: ["safe", "unsafe"], model: { fingerprint: engine.fingerprint, blocks: engine.spec.blocks, dim: engine.spec.dim }, parameterCount: { aggregator: probe.parameterCount(), head: 2 * shape.dim + 2 }, createdAt: new Date(0).toISOString() },
  };
}

const quantile = (xs: number[], q: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };

interface Row { setup: string; variant: string; medianMs: number; p95Ms: number; ratio: number; params?: number }

async function benchSetup(setup: string, servingPath: string, guards: { name: string; path: string }[], mhaDowncast: number, texts: string[]): Promise<Row[]> {
  const plain = await Engine.load(servingPath, { taps: false });
  const tapped = await Engine.load(servingPath, { taps: true });
  const guardEngines = await Promise.all(guards.map((g) => Engine.load(g.path, { taps: false })));
  const cut = (e: Engine, t: string) => e.promptTokens({ prompt: t }).slice(0, MAX_LEN);
  const probeConfigs: [string, ProbeConfig][] = [["+ pooling probe", { kind: "pooling" }], ["+ scoring probe", { kind: "scoring" }], [`+ MHA probe (H=4, f=${mhaDowncast})`, { kind: "mha", heads: 4, downcast: mhaDowncast }]];
  const probes = probeConfigs.map(([, c]) => randomProbe(tapped, c));
  const one = { maxTokens: 1, temperature: 0, eosTokenIds: [] as number[] };
  const variants: { name: string; run: (t: string) => Promise<unknown>; params?: number }[] = [
    { name: "base (prefill + 1 token)", run: (t) => plain.generate({ ...one, prompt: cut(plain, t) }).result },
    ...probeConfigs.map(([name], i) => ({ name, params: probes[i].probe.parameterCount({ includeHead: true }), run: (t: string) => generateWithProbes(tapped, { ...one, prompt: cut(tapped, t) }, [probes[i]]).generation.result })),
    ...guards.map((g, i) => ({ name: `guard-then-serve, ${g.name}`, run: async (t: string) => { await guardEngines[i].generate({ ...one, prompt: cut(guardEngines[i], t) }).result; return plain.generate({ ...one, prompt: cut(plain, t) }).result; } })),
  ];
  const times: number[][] = variants.map(() => []);
  for (const v of variants) await v.run(texts[0]); // warm-up of every session
  const bar = new ProgressBar({ total: RUNS * texts.length, label: `cost ${setup}`, unit: "prompt" });
  // Variants take turns on each prompt, so load from other processes hits them alike.
  for (let r = 0; r < RUNS; r++) for (let k = 0; k < texts.length; k++) {
    for (let v = 0; v < variants.length; v++) {
      const t0 = performance.now();
      await variants[v].run(texts[k]);
      times[v].push(performance.now() - t0);
    }
    bar.update(r * texts.length + k + 1);
  }
  bar.finish();
  await plain.dispose(); await tapped.dispose();
  for (const g of guardEngines) await g.dispose();
  const base = quantile(times[0], 0.5);
  return variants.map((v, i) => ({ setup, variant: v.name, medianMs: quantile(times[i], 0.5), p95Ms: quantile(times[i], 0.95), ratio: quantile(times[i], 0.5) / base, params: v.params }));
}

const ds = await loadPreset("toxicchat", { split: "test", dataDir });
const stride = Math.max(1, Math.floor(ds.examples.length / SAMPLES));
const texts = ds.examples.filter((_, i) => i % stride === 0).slice(0, SAMPLES).map((e) => e.text);
const t0 = performance.now();
const rows: Row[] = [];
// stories260K: d 64, 5 layers, 8/4 heads, FFN 172, vocab 512; the larger guard has 3× its layers.
const stories = "assets/stories260K.gguf";
const storiesX3 = randomModel("stories-shape-x3-layers.gguf", { architecture: "llama", blocks: 15, dim: 64, heads: 8, kvHeads: 4, ffnDim: 172, vocabSize: 512, dtype: "f32", seed: 7, tokenizer: `copy-from:${stories}`, contextLength: 1024, name: "random stories260K shape ×3 layers" });
rows.push(...await benchSetup("stories260K", stories, [{ name: "equal size (stories260K)", path: stories }, { name: "3× layers (random, stories shape)", path: storiesX3 }], 8, texts));
if (process.argv.includes("--qwen")) {
  const qwen = ensureQwenShapedModel();
  const llama1b = randomModel("llama-3.2-1b-shape-q4_0.gguf", { architecture: "llama", blocks: 16, dim: 2048, heads: 32, kvHeads: 8, headDim: 64, ffnDim: 8192, vocabSize: 128256, dtype: "q4_0", seed: 11, tiedEmbeddings: true, contextLength: 8192, name: "random-llama-3.2-1b-shape" });
  rows.push(...await benchSetup("Qwen2.5-0.5B shape (random)", qwen, [{ name: "Qwen2.5-0.5B shape", path: qwen }, { name: "Llama-3.2-1B shape", path: llama1b }], 32, texts));
}
const peakRssMiB = process.resourceUsage().maxRSS / 1024;
const machine = `${cpus().length}× ${cpus()[0]?.model ?? "?"}`;
const wall = (performance.now() - t0) / 1000;
mkdirSync(out, { recursive: true });
writeFileAtomic(join(out, "cost.json"), JSON.stringify({ machine, samples: texts.length, runs: RUNS, maxLength: MAX_LEN, peakRssMiB, wallSeconds: wall, rows }, null, 1) + "\n");
const md = [`Cost per request (batch 1, ToxicChat test prompts: every ${stride}th of ${ds.examples.length}, ${texts.length} prompts × ${RUNS} run(s), cut at ${MAX_LEN} tokens, one new token). ${machine}; process peak RSS ${peakRssMiB.toFixed(0)} MiB with every engine loaded; wall ${wall.toFixed(0)} s.`, "",
  "| setup | variant | median ms | p95 ms | ratio to base |", "|---|---|---|---|---|",
  ...rows.map((r) => `| ${r.setup} | ${r.variant} | ${r.medianMs.toFixed(2)} | ${r.p95Ms.toFixed(2)} | ${r.ratio.toFixed(2)} |`),
  "", "Paper (Llama-3.2-3B, GPU): pooling 1.12, scoring 1.17, MHA 1.52; guard-then-serve 3.34–4.66."].join("\n");
writeFileAtomic(join(out, "cost.md"), md + "\n");
console.log(md);
