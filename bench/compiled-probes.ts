// Where a compiled probe set should run: (a) in its own ORT session on the decoder's hidden_states output
// (what src/probe/live.ts does), or (b) appended to the decoder graph so one run() returns logits, KV and the
// probes' probabilities (hidden_states stays inside ORT, never copied out). Same decoder file, same prefill
// feeds; variants take turns within each round. Also: the compiled set vs the training autograd on the same
// hidden states.
// Usage: npm run bench:compiled [-- --runs N --prompt T --threads N --sets pooling,scoring,mha,4 --no-autograd]
// GC: V8's pauses are summed per variant (mean ms per round): (a) fetches the taps, a new 11.5 MB ArrayBuffer
// per run (0.5B shape, 128 tokens), and pays for it in GC; (b) fetches only the probabilities. With the decoder
// threads stopping their spin when a run returns (as the engine's do now), load ~8, 7 rounds, (a) total /
// (b): pooling 2179 / 1922, MHA 1897 / 1837, 4 probes 1925 / 1873 ms; GC (a) 8.2 / 9.4 / 6.8, (b) 0.0 / 0.3 /
// 1.4 ms per round. (An earlier run, decoder threads spinning on, had (b) 2–22% slower.)
import { readFileSync } from "node:fs";
import { PerformanceObserver } from "node:perf_hooks";
import { dirname } from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import "../src/util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { ensureDecoderGraph } from "../src/graph/cache.js";
import { newKvName, pastName } from "../src/graph/decoder.js";
import { HIDDEN_STATES_OUTPUT } from "../src/graph/surgery.js";
import { loadModel } from "../src/model/load.js";
import { HiddenStates } from "../src/types/hidden.js";
import { CompiledProbes, compileProbeGraph } from "../src/probe/compiled.js";
import type { Probe, ProbeConfig } from "../src/probe/probe.js";
import { randomBenchProbe } from "../src/bench/models.js";
import { arg, ensureQwenShapedModel, median } from "./common.js";

const RUNS = arg("runs", 7);
const PROMPT = arg("prompt", 128);
const THREADS = arg("threads", 2);

const SETS: { name: string; configs: ProbeConfig[] }[] = [
  { name: "pooling", configs: [{ kind: "pooling", pool: "mean" }] },
  { name: "scoring", configs: [{ kind: "scoring" }] },
  { name: "MHA (H 8, f 8)", configs: [{ kind: "mha", heads: 8, downcast: 8 }] },
  { name: "4 probes", configs: [{ kind: "pooling", pool: "mean" }, { kind: "scoring" }, { kind: "mha", heads: 8, downcast: 8 }, { kind: "fixed" }] },
];

function probesFor(configs: ProbeConfig[], layers: number, dim: number): Probe[] {
  // standardised, as `train` makes probes by default (made-up input statistics)
  return configs.map((c, k) => randomBenchProbe({ ...c, standardize: true }, { layers, dim, classes: 2 }, k));
}

/** The decoder model with the (dense: batch 1, no padding) probe graph appended, its `hidden` input wired to hidden_states. */
function appended(decoderPath: string, probeBytes: Uint8Array): Uint8Array {
  const model = fromBinary(ModelProtoSchema, readFileSync(decoderPath));
  const probe = fromBinary(ModelProtoSchema, probeBytes);
  const g = model.graph!, pg = probe.graph!;
  const rename = (n: string) => (n === "hidden" ? HIDDEN_STATES_OUTPUT : n === "" ? "" : `probe/${n}`);
  for (const n of pg.node) g.node.push({ ...n, input: n.input.map(rename), output: n.output.map(rename), name: n.name === "" ? "" : `probe/${n.name}` });
  for (const t of pg.initializer) g.initializer.push({ ...t, name: rename(t.name) });
  for (const o of pg.output) g.output.push({ ...o, name: rename(o.name) });
  return toBinary(ModelProtoSchema, model);
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const setsAt = process.argv.indexOf("--sets");
const ONLY = setsAt >= 0 ? process.argv[setsAt + 1].split(",") : undefined;
const AUTOGRAD = !process.argv.includes("--no-autograd");

/** V8 GC pauses (start, ms) as perf_hooks reports them; gcSince sums those that started at or after `t`. */
const gcPauses: { start: number; ms: number }[] = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcPauses.push({ start: e.startTime, ms: e.duration });
}).observe({ entryTypes: ["gc"] });
const gcBetween = (from: number, to: number) => gcPauses.filter((g) => g.start >= from && g.start < to).reduce((a, g) => a + g.ms, 0);

async function main(): Promise<void> {
  const path = ensureQwenShapedModel();
  const model = await loadModel(path);
  const { blocks: L, dim: d, kvHeads, headDim } = model.spec;
  const graph = ensureDecoderGraph(model, { taps: true });
  const options = (extra: Record<string, unknown> = {}): ort.InferenceSession.SessionOptions => ({
    intraOpNumThreads: THREADS, interOpNumThreads: 1, graphOptimizationLevel: "all", executionMode: "sequential",
    // as the engine's decoder sessions (src/engine/session.ts spinConfig): spin within a run, stop when it returns
    extra: { session: { intra_op: { allow_spinning: "1" }, force_spinning_stop: "1" }, ...extra },
  });
  const decoder = await ort.InferenceSession.create(graph.modelPath, options());
  const T = PROMPT, cap = Math.max(64, 2 ** Math.ceil(Math.log2(T)));
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor("int64", BigInt64Array.from({ length: T }, (_, i) => BigInt(3 + ((i * 7919) % 1000))), [1, T]),
    attention_mask: new ort.Tensor("int64", new BigInt64Array(T).fill(1n), [1, T]),
    position_ids: new ort.Tensor("int64", BigInt64Array.from({ length: T }, (_, i) => BigInt(i)), [1, T]),
    logits_positions: new ort.Tensor("int64", BigInt64Array.of(BigInt(T - 1)), [1]),
  };
  const kvFetch: string[] = [];
  for (let i = 0; i < L; i++) {
    for (const k of ["key", "value"] as const) {
      feeds[pastName(i, k)] = new ort.Tensor("float32", new Float32Array(kvHeads * cap * headDim), [1, kvHeads, cap, headDim]);
      kvFetch.push(newKvName(i, k));
    }
  }
  console.log(`random Qwen2.5-0.5B-shaped Q4_0 (L=${L}, d=${d}), prompt ${T} tokens, ${THREADS} threads, median of ${RUNS}; ms`);
  console.log(`${"probe set".padEnd(16)} ${"base run".padStart(9)} ${"(a) run+taps".padStart(13)} ${"+probe sess".padStart(12)} ${"(a) total".padStart(10)} ${"(b) appended".padStart(13)} ${"(a)/base".padStart(9)} ${"(b)/base".padStart(9)} ${"autograd".padStart(9)} ${"GC (a)".padStart(7)} ${"GC (b)".padStart(7)} ${"GC base".padStart(8)}`);
  const keys = ["pooling", "scoring", "mha", "4"];
  for (const set of SETS.filter((_, i) => ONLY === undefined || ONLY.includes(keys[i]))) {
    const probes = probesFor(set.configs, L + 1, d);
    const compiled = await CompiledProbes.create(probes, { threads: THREADS });
    const merged = await ort.InferenceSession.create(appended(graph.modelPath, compileProbeGraph(probes, { padded: false })),
      options({ session: { intra_op: { allow_spinning: "1" }, force_spinning_stop: "1", model_external_initializers_file_folder_path: dirname(graph.modelPath) } }));
    const probeOuts = probes.map((_, i) => `probe/probs_${i}`);
    const rows: Record<string, number[]> = { base: [], taps: [], probe: [], merged: [], autograd: [], gcA: [], gcB: [], gcBase: [] };
    for (let r = -1; r < RUNS; r++) {
      let t0 = performance.now();
      const tBase = t0;
      await decoder.run(feeds, ["logits", ...kvFetch]);
      const base = performance.now() - t0;
      t0 = performance.now();
      const tA = t0;
      const out = await decoder.run(feeds, ["logits", ...kvFetch, HIDDEN_STATES_OUTPUT]);
      const taps = performance.now() - t0;
      t0 = performance.now();
      const h = out[HIDDEN_STATES_OUTPUT].data as Float32Array; // [L+1, 1, T, d]
      const a = await compiled.run(h, 1, T);
      const probe = performance.now() - t0;
      t0 = performance.now();
      const tB = t0;
      const b = await merged.run(feeds, ["logits", ...kvFetch, ...probeOuts]);
      const m = performance.now() - t0;
      const tEnd = performance.now();
      // the two placements agree
      for (let i = 0; i < probes.length; i++) {
        const pb = b[probeOuts[i]].data as Float32Array;
        if (Math.abs(pb[0] - a[i].probabilities[0]) > 1e-4) throw new Error(`appended and own-session probabilities differ: ${pb[0]} vs ${a[i].probabilities[0]}`);
      }
      t0 = performance.now();
      if (AUTOGRAD) for (const p of probes) await p.predict(new HiddenStates(L + 1, T, d, h));
      const auto = performance.now() - t0;
      await new Promise((resolve) => setTimeout(resolve, 0)); // the GC observer delivers this round's pauses
      if (r >= 0) {
        rows.base.push(base); rows.taps.push(taps); rows.probe.push(probe); rows.merged.push(m); rows.autograd.push(auto);
        rows.gcBase.push(gcBetween(tBase, tA)); rows.gcA.push(gcBetween(tA, tB)); rows.gcB.push(gcBetween(tB, tEnd));
      }
    }
    const [base, taps, probe, m, auto] = ["base", "taps", "probe", "merged", "autograd"].map((k) => median(rows[k]));
    const [gcA, gcB, gcBase] = ["gcA", "gcB", "gcBase"].map((k) => mean(rows[k]));
    const total = median(rows.taps.map((t, i) => t + rows.probe[i]));
    const f = (x: number, w: number) => x.toFixed(1).padStart(w);
    console.log(`${set.name.padEnd(16)} ${f(base, 9)} ${f(taps, 13)} ${f(probe, 12)} ${f(total, 10)} ${f(m, 13)} ${(total / base).toFixed(3).padStart(8)}× ${(m / base).toFixed(3).padStart(8)}× ${AUTOGRAD ? f(auto, 9) : "-".padStart(9)} ${f(gcA, 7)} ${f(gcB, 7)} ${f(gcBase, 8)}`);
    await compiled.dispose();
    await merged.release();
  }
  await decoder.release();
  model.weights.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
