// Engine benchmark: onepass (ORT decoder graph, taps on / off) vs node-llama-cpp on the same random-weight
// Q4_0 GGUF with Qwen2.5-0.5B shapes.
//   1. one request: prefill tokens/s at T = 512 (taps on: the [L+1, T, d] hidden states come back too, from the
//      graph that always stacks them; taps summaries: the summaries graph returns what live pooling + scoring +
//      fixed probes read, see bench/engine-worker.ts) and decode tokens/s at context ≈ 512;
//   2. concurrency: aggregate decode tokens/s and per-request latency with 1, 4 and 8 streams at once (onepass:
//      continuous batching through Engine.generate; node-llama-cpp: one context with a sequence per stream);
//   3. peak RSS of each engine's process.
// Each engine runs in its own child process (bench/engine-worker.ts): peak RSS is per engine, not the order
// they ran in. Rounds are interleaved (engine A, B, C, A, B, C, ...) because this machine is shared: load from
// other processes moves absolute figures by ±30% or more, so compare within one run; the table shows the best
// and the median round.
// Usage: npm run bench:engine [-- --threads N --runs N --decode N --accuracy 0|4 --streams-runs N --new-tokens N --no-llama --no-streams]
import { readFileSync } from "node:fs";
import { Child, cpuLine, steadyDecodeRate } from "./child.js";
import { arg, ensureQwenShapedModel, QWEN_SHAPED_PATH as ggufPath, median, promptTokens } from "./common.js";
import type { RoundReply, StreamsReply } from "./engine-worker.js";

const THREADS = arg("threads", 2);
const RUNS = arg("runs", 7);
const PROMPT = 512;
const DECODE = arg("decode", 32);
const ACCURACY = arg("accuracy", 4) as 0 | 4;
const STREAM_RUNS = arg("streams-runs", 2);
const NEW_TOKENS = arg("new-tokens", 64);
const STREAM_PROMPT = 32;
const STREAMS = [1, 4, 8];
const WITH_LLAMA = !process.argv.includes("--no-llama");
const WITH_STREAMS = !process.argv.includes("--no-streams");

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  ensureQwenShapedModel();
  console.log(`model ${ggufPath}`);
  console.log(`cpu ${cpuLine()}; load average ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
  console.log(`threads ${THREADS}, prompt ${PROMPT}, decode ${DECODE} steps, ${RUNS} interleaved rounds; MatMulNBits accuracy_level ${ACCURACY}; each engine in its own process`);
  const children = [
    new Child("onepass, taps off", ["onepass", ggufPath, String(THREADS), "0", String(ACCURACY)]),
    new Child("onepass, taps on", ["onepass", ggufPath, String(THREADS), "1", String(ACCURACY)]),
    new Child("onepass, taps summaries", ["onepass", ggufPath, String(THREADS), "2", String(ACCURACY)]),
  ];
  const ONEPASS = children.length;
  if (WITH_LLAMA) children.push(new Child("node-llama-cpp 3.21.1", ["llama", ggufPath, String(THREADS), "0", "0"]));
  // loaded one after the other, so that load times do not compete
  const loads: number[] = [];
  for (const c of children) loads.push((await c.ready).loadS);
  const prompt = promptTokens(PROMPT, 12345);

  const rounds = children.map(() => ({ prefill: [] as number[], decode: [] as number[] }));
  for (let r = 0; r < RUNS; r++) {
    // the onepass variants back to back, rotated each round (none always runs first or right after llama.cpp)
    const order = children.map((_, e) => (e < ONEPASS ? (e + r) % ONEPASS : e));
    for (const e of order) {
      await pause(200);
      const reply = await children[e].ask<RoundReply>({ op: "round", prompt, decode: DECODE });
      rounds[e].prefill.push(reply.prefillMs);
      rounds[e].decode.push(reply.decodeMsPerToken);
    }
  }
  const peakAfterRounds = children.map((c) => c.peakMiB);

  const stats = rounds.map((r) => ({
    prefillBest: (PROMPT * 1000) / Math.min(...r.prefill),
    prefillMed: (PROMPT * 1000) / median(r.prefill),
    decodeBest: 1000 / Math.min(...r.decode),
    decodeMed: 1000 / median(r.decode),
    prefillMsBest: Math.min(...r.prefill),
    prefillMsMed: median(r.prefill),
  }));
  const f = (x: number, w = 9) => x.toFixed(1).padStart(w);
  console.log(`\n${"one request".padEnd(24)} ${"prefill tok/s".padStart(19)} ${"decode tok/s".padStart(19)} ${"peak RSS".padStart(9)} ${"load s".padStart(7)}`);
  console.log(`${"".padEnd(24)} ${"best".padStart(9)} ${"median".padStart(9)} ${"best".padStart(9)} ${"median".padStart(9)} ${"MiB".padStart(9)}`);
  children.forEach((c, i) => {
    const s = stats[i];
    console.log(`${c.name.padEnd(24)} ${f(s.prefillBest)} ${f(s.prefillMed)} ${f(s.decodeBest)} ${f(s.decodeMed)} ${f(peakAfterRounds[i], 9)} ${f(loads[i], 7)}`);
  });
  const [off, on, summ] = stats;
  const cpp = stats[ONEPASS] as (typeof stats)[number] | undefined;
  const cppAt = ONEPASS;
  // the tap cost from each round's pair (taps off and on ran back to back in that round), not from the ratio of
  // medians: other processes' load moves both halves of a pair alike, so the paired ratios spread far less
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  for (const [e, what] of [[1, "taps on (stacked, fetched)"], [2, "taps summaries"]] as const) {
    const pairs = rounds[e].prefill.map((ms, r) => ms / rounds[0].prefill[r] - 1).sort((a, b) => a - b);
    const q = (x: number) => pairs[Math.min(pairs.length - 1, Math.max(0, Math.round(x * (pairs.length - 1))))];
    const s = e === 1 ? on : summ;
    console.log(`${e === 1 ? "\n" : ""}tap cost, ${what}: ${pct(q(0.5))} of prefill (median of ${pairs.length} paired rounds, quartiles ${pct(q(0.25))} .. ${pct(q(0.75))}; ratio of medians ${pct((s.prefillMsMed - off.prefillMsMed) / off.prefillMsMed)})`);
  }
  console.log("bench/tap-cost.ts measures it in one process in CPU time");
  const ratio = (a: number, b: number) => (a / b).toFixed(2) + "×";
  if (cpp !== undefined) {
    console.log(`onepass taps on / llama.cpp:  prefill ${ratio(on.prefillBest, cpp.prefillBest)} (median ${ratio(on.prefillMed, cpp.prefillMed)}), decode ${ratio(on.decodeBest, cpp.decodeBest)} (median ${ratio(on.decodeMed, cpp.decodeMed)}), peak RSS ${ratio(peakAfterRounds[1], peakAfterRounds[cppAt])}`);
    console.log(`onepass taps summaries / llama.cpp: prefill ${ratio(summ.prefillBest, cpp.prefillBest)} (median ${ratio(summ.prefillMed, cpp.prefillMed)}), decode ${ratio(summ.decodeBest, cpp.decodeBest)} (median ${ratio(summ.decodeMed, cpp.decodeMed)}), peak RSS ${ratio(peakAfterRounds[2], peakAfterRounds[cppAt])}`);
    console.log(`onepass taps off / llama.cpp: prefill ${ratio(off.prefillBest, cpp.prefillBest)}, decode ${ratio(off.decodeBest, cpp.decodeBest)}`);
  }

  if (WITH_STREAMS) {
    // concurrency: the taps-off onepass process (generation without probes) against llama.cpp
    const contenders = [children[0], ...(WITH_LLAMA ? [children[ONEPASS]] : [])];
    console.log(`\nconcurrent streams: ${STREAM_PROMPT}-token prompts, ${NEW_TOKENS} new tokens each, ${STREAM_RUNS} interleaved rounds (median); agg = all tokens / wall time (prefills included), steady = while every stream decodes`);
    console.log(`${"engine".padEnd(24)} ${"streams".padStart(7)} ${"agg tok/s".padStart(10)} ${"× 1 stream".padStart(10)} ${"steady tok/s".padStart(12)} ${"× 1 stream".padStart(10)} ${"latency ms".padStart(11)} ${"1st tok ms".padStart(11)} ${"batch".padStart(6)}`);
    const base = new Map<string, number>();
    const steadyBase = new Map<string, number>();
    for (const n of STREAMS) {
      const prompts = Array.from({ length: n }, (_, i) => promptTokens(STREAM_PROMPT, 777 + i));
      const res = contenders.map(() => [] as StreamsReply[]);
      for (let r = 0; r < STREAM_RUNS; r++) {
        for (let e = 0; e < contenders.length; e++) {
          await pause(200);
          res[e].push(await contenders[e].ask<StreamsReply>({ op: "streams", prompts, newTokens: NEW_TOKENS }));
        }
      }
      contenders.forEach((c, e) => {
        const agg = median(res[e].map((x) => (x.tokens * 1000) / x.wallMs));
        const steady = median(res[e].map((x) => steadyDecodeRate(x.tokenMs)));
        if (n === 1) {
          base.set(c.name, agg);
          steadyBase.set(c.name, steady);
        }
        const lat = median(res[e].map((x) => mean(x.latencyMs)));
        const ttft = median(res[e].map((x) => mean(x.firstTokenMs)));
        const batch = res[e][0].meanBatch;
        console.log(`${c.name.padEnd(24)} ${String(n).padStart(7)} ${f(agg, 10)} ${ratio(agg, base.get(c.name)!).padStart(10)} ${f(steady, 12)} ${ratio(steady, steadyBase.get(c.name)!).padStart(10)} ${f(lat, 11)} ${f(ttft, 11)} ${(batch === undefined ? "—" : batch.toFixed(1)).padStart(6)}`);
      });
    }
    console.log(`\npeak RSS after the streams: ${contenders.map((c) => `${c.name} ${c.peakMiB.toFixed(0)} MiB`).join(", ")}`);
  }
  for (const c of children) await c.exit();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
