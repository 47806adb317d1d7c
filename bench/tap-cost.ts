// What the hidden-state taps cost a prefill, measured so that the figure can be trusted on a shared machine:
// one process holds two decoder sessions over the same Qwen2.5-0.5B-shaped Q4_0 GGUF (graph with taps, graph
// without), and every round runs the same prompt on each back to back, alternating which goes first. The tap
// cost is the median of the per-round paired ratios (load from other processes hits both halves of a pair
// alike), with the interquartile range of those ratios as its spread. A third variant runs the taps graph
// without fetching hidden_states, which splits the cost into "inside ORT" (the Concat, buffers kept alive for
// it) and "out of ORT" (onnxruntime-node copying [L+1, T, d] into a new ArrayBuffer, and joining chunks).
// The prompt runs once in one ORT run and once in chunks of --chunk tokens (joined afterwards: one more copy of
// [L+1, T, d]), each against the no-taps graph chunked the same way.
// The summaries graph (tapSummaries, the engine's default) computes taps only on request: fetched whole
// ("hidden fetched"), as the per-layer token summaries the live pooling + scoring + fixed probes read (sum, last
// token, max, one scoring gate: "summaries"), or nothing. The stacked graph (tapSummaries: false) is the old one.
// Usage: node dist/bench/tap-cost.js [--rounds N --prompt T --chunk N --threads N]
import { readFileSync } from "node:fs";
import { arg, ensureQwenShapedModel } from "./common.js";
import { loadModel } from "../src/model/load.js";
import { createDecoderSession } from "../src/engine/session.js";
import type { DecoderSession, ForwardOptions } from "../src/engine/types.js";

const ROUNDS = arg("rounds", 15);
const PROMPT = arg("prompt", 512);
const THREADS = arg("threads", 2);
const CHUNK = arg("chunk", 256);

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (pos - lo);
};

async function main(): Promise<void> {
  const path = ensureQwenShapedModel();
  const model = await loadModel(path);
  console.log(`model ${path}; threads ${THREADS}; prompt ${PROMPT}; ${ROUNDS} paired rounds; load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
  const opts = { threads: THREADS, allowSpinning: false };
  // the prompt in one ORT run (maxChunk = PROMPT) and in runs of CHUNK tokens assembled afterwards
  const on = await createDecoderSession(model, { ...opts, taps: true, tapSummaries: false, maxChunk: PROMPT });
  const off = await createDecoderSession(model, { ...opts, taps: false, maxChunk: PROMPT });
  const sum = await createDecoderSession(model, { ...opts, taps: true, tapSummaries: true, maxChunk: PROMPT });
  const onChunked = await createDecoderSession(model, { ...opts, taps: true, tapSummaries: false, maxChunk: CHUNK });
  const offChunked = await createDecoderSession(model, { ...opts, taps: false, maxChunk: CHUNK });
  const sumChunked = await createDecoderSession(model, { ...opts, taps: true, tapSummaries: true, maxChunk: CHUNK });
  const prompt = Array.from({ length: PROMPT }, (_, i) => 3 + ((i * 7919 + 13) % (model.spec.vocabSize - 3)));
  // what pooling (mean) + scoring + fixed (max) probes ask for: sum and last token, max, one gate
  const L1 = model.spec.blocks + 1, d = model.spec.dim;
  // one gate with a two-class probe's 1 + 2 reads (its layer gate and head columns)
  const gate = { weights: Float32Array.from({ length: L1 * d * 4 }, (_, i) => Math.sin(i) / Math.sqrt(d)), bias: new Float32Array(L1), count: 1, readOf: new Int32Array(3) };
  const summaries: ForwardOptions = { summary: { max: true, gates: gate } };
  const variants: { name: string; s: DecoderSession; o: ForwardOptions; base: number }[] = [
    { name: "stacked graph, hidden fetched", s: on, o: { hidden: true }, base: 2 },
    { name: "stacked graph, not fetched", s: on, o: {}, base: 2 },
    { name: "no-taps graph", s: off, o: {}, base: 2 },
    { name: "summaries graph: summaries", s: sum, o: summaries, base: 2 },
    { name: "summaries graph: nothing", s: sum, o: {}, base: 2 },
    { name: "summaries graph: hidden", s: sum, o: { hidden: true }, base: 2 },
    { name: `chunks of ${CHUNK}: stacked, fetched`, s: onChunked, o: { hidden: true }, base: 8 },
    { name: `chunks of ${CHUNK}: summaries`, s: sumChunked, o: summaries, base: 8 },
    { name: `chunks of ${CHUNK}: no-taps graph`, s: offChunked, o: {}, base: 8 },
  ];
  // CPU time (user + system, all threads of this process) as well as wall time: with ORT's threads not spinning
  // it counts the work done, and is far less moved by other processes' load than wall time
  const run = async (v: (typeof variants)[number]): Promise<[number, number]> => {
    v.s.reset();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const p = await v.s.forward(prompt, v.o);
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    if (v.o.hidden === true && p.hidden === undefined) throw new Error("no hidden states");
    if (v.o.summary !== undefined && p.summary?.tokens !== PROMPT) throw new Error("no summary");
    return [ms, (c.user + c.system) / 1000];
  };
  for (const v of variants) await run(v); // warm-up
  const ms = variants.map(() => [] as number[]);
  const cpu = variants.map(() => [] as number[]);
  for (let r = 0; r < ROUNDS; r++) {
    // rotate the order so that no variant always runs first (or right after the others)
    for (let k = 0; k < variants.length; k++) {
      const i = (r + k) % variants.length;
      const [w, c] = await run(variants[i]);
      ms[i].push(w);
      cpu[i].push(c);
    }
    process.stderr.write(`\rround ${r + 1}/${ROUNDS}`);
  }
  process.stderr.write("\n");
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  for (const [what, xs] of [["wall", ms], ["CPU", cpu]] as const) {
    console.log(`\n${what} time`);
    console.log(`${"variant".padEnd(32)} ${"median ms".padStart(10)} ${"tok/s".padStart(8)} ${"vs no-taps: median".padStart(19)} ${"IQR".padStart(16)}`);
    variants.forEach((v, i) => {
      // each variant against the no-taps graph with the same chunking, in the same round
      const ratios = xs[i].map((x, r) => x / xs[v.base][r] - 1);
      const med = quantile(xs[i], 0.5);
      console.log(
        `${v.name.padEnd(32)} ${med.toFixed(1).padStart(10)} ${((PROMPT * 1000) / med).toFixed(1).padStart(8)} ${pct(quantile(ratios, 0.5)).padStart(19)} ${`${pct(quantile(ratios, 0.25))} .. ${pct(quantile(ratios, 0.75))}`.padStart(16)}`,
      );
    });
  }
  for (const s of [on, off, sum, onChunked, offChunked, sumChunked]) await s.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
