// Kernel floor: how fast could onepass's prefill and batched decode be if every op but the 4-bit matmuls
// (ORT's MatMulNBits, MLAS kernels) cost nothing? Runs the engine with ORT profiling, sums each run's kernel time
// by op type, and sets the MatMulNBits-only speed beside node-llama-cpp's whole prefill / decode on the same
// random Qwen2.5-0.5B-shaped Q4_0 GGUF, measured in the same run. Where the MatMulNBits-only figure is already
// below llama.cpp's, no graph or scheduling change reaches llama.cpp on this CPU: only a faster kernel would.
//   1. prefill of a 512-token prompt (chunks of 256) with the tap summaries live probes read;
//   2. one stream, then 8 concurrent streams (32-token prompts): decode steps of 1 and of up to 8 rows at the same
//      contexts; the bound on the 8-stream speed-up is 8 × (1-row step) / (MatMulNBits time of an 8-row step);
//   at MatMulNBits accuracy level 4 (int8 activations) and 0 (float), each engine in its own process.
// Usage: npm run bench:floor [-- --threads N --runs N --no-level0]
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { arg, ensureQwenShapedModel, median, promptTokens, QWEN_SHAPED_PATH as ggufPath } from "./common.js";
import { Child, cpuLine, steadyDecodeRate } from "./child.js";
import type { RoundReply, StreamsReply } from "./engine-worker.js";
import { profiledRuns, readProfiles, type ProfiledRun } from "./ort-profile.js";

const THREADS = arg("threads", 2);
const RUNS = arg("runs", 3);
const PROMPT = 512;
const STREAM_PROMPT = 32;
const NEW_TOKENS = 64;
const LEVELS: (0 | 4)[] = process.argv.includes("--no-level0") ? [4] : [4, 0];

/** Kernel time of one class of runs (same batch rows × tokens at the first MatMulNBits). */
interface RunClass {
  rows: number;
  tokens: number;
  runs: number;
  /** Summed over the class's runs, ms. */
  runMs: number;
  byOp: Map<string, number>;
}

/** Groups model runs by the [B, T] their first MatMulNBits reads, and sums kernel time per op type. */
function runClasses(runs: ProfiledRun[]): Map<string, RunClass> {
  const classes = new Map<string, RunClass>();
  for (const run of runs) {
    if (run.rows === undefined || run.tokens === undefined) continue;
    const key = `${run.rows}x${run.tokens}`;
    const c = classes.get(key) ?? { rows: run.rows, tokens: run.tokens, runs: 0, runMs: 0, byOp: new Map() };
    c.runs++;
    c.runMs += run.dur / 1000;
    for (const e of run.topLevel) c.byOp.set(e.args!.op_name!, (c.byOp.get(e.args!.op_name!) ?? 0) + e.dur / 1000);
    classes.set(key, c);
  }
  return classes;
}

const perRun = (c: RunClass, op?: string) => (op === undefined ? c.runMs : (c.byOp.get(op) ?? 0)) / c.runs;
const kernelMs = (c: RunClass) => [...c.byOp.values()].reduce((a, b) => a + b, 0) / c.runs;

async function main(): Promise<void> {
  ensureQwenShapedModel();
  console.log(`model ${ggufPath}`);
  console.log(`cpu ${cpuLine()}; load average ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
  console.log(`threads ${THREADS}; prefill of ${PROMPT} tokens, 1 and 8 streams of ${STREAM_PROMPT}-token prompts × ${NEW_TOKENS} tokens, ${RUNS} rounds; onepass with ORT profiling on (it slows runs a little); decode rates are the steady ones (every stream decoding)`);
  const dir = mkdtempSync(join(tmpdir(), "onepass-floor-"));
  try {
    const prompt = promptTokens(PROMPT, 12345);
    const streamPrompts = Array.from({ length: 8 }, (_, i) => promptTokens(STREAM_PROMPT, 777 + i));
    const llama = new Child("node-llama-cpp 3.21.1", ["llama", ggufPath, String(THREADS), "0", "0"]);
    await llama.ready;
    const cpp = { prefill: [] as number[], one: [] as number[], eight: [] as number[] };
    for (let r = 0; r < RUNS; r++) {
      const round = await llama.ask<RoundReply>({ op: "round", prompt, decode: 1 });
      cpp.prefill.push((PROMPT * 1000) / round.prefillMs);
      const one = await llama.ask<StreamsReply>({ op: "streams", prompts: streamPrompts.slice(0, 1), newTokens: NEW_TOKENS });
      cpp.one.push(steadyDecodeRate(one.tokenMs));
      const eight = await llama.ask<StreamsReply>({ op: "streams", prompts: streamPrompts, newTokens: NEW_TOKENS });
      cpp.eight.push(steadyDecodeRate(eight.tokenMs));
    }
    await llama.exit();
    const llamaPrefill = median(cpp.prefill);
    const llamaDecode = median(cpp.one);
    console.log(`\nnode-llama-cpp (median of ${RUNS}): prefill ${llamaPrefill.toFixed(1)} tok/s, decode ${llamaDecode.toFixed(1)} tok/s (1 stream), 8 sequences ${median(cpp.eight).toFixed(1)} tok/s = ${(median(cpp.eight) / llamaDecode).toFixed(2)}× 1 stream`);

    for (const level of LEVELS) {
      const prefix = join(dir, `level${level}`);
      // the engine's default graph, its prefill returning what live pooling + scoring + fixed probes read (engine-worker taps 2)
      const onepass = new Child(`onepass level ${level}`, ["onepass", ggufPath, String(THREADS), "2", String(level), prefix]);
      await onepass.ready;
      for (let r = 0; r < RUNS; r++) {
        await onepass.ask<RoundReply>({ op: "round", prompt, decode: 0 }); // prefill only: every 1-row step below is a stream's
        await onepass.ask<StreamsReply>({ op: "streams", prompts: streamPrompts.slice(0, 1), newTokens: NEW_TOKENS });
        await onepass.ask<StreamsReply>({ op: "streams", prompts: streamPrompts, newTokens: NEW_TOKENS });
      }
      await onepass.exit(); // the profile is complete once the session is released
      const profiles = readProfiles(dir, `level${level}`);
      if (profiles.length === 0) throw new Error(`no ORT profile for level ${level} in ${dir}`);
      const classes = runClasses(profiles.flatMap(profiledRuns)); // each session's file has its own clock
      const prefill = classes.get(`1x${Math.min(256, PROMPT)}`);
      const one = classes.get("1x1");
      const eight = classes.get("8x1");
      console.log(`\nonepass, MatMulNBits accuracy level ${level}: mean per ORT run, ms`);
      console.log(`${"run [B × T]".padEnd(14)} ${"runs".padStart(5)} ${"wall".padStart(8)} ${"kernels".padStart(8)} ${"MatMulNBits".padStart(12)} ${"share".padStart(6)}  next largest`);
      for (const c of [...classes.values()].sort((a, b) => b.rows * b.tokens - a.rows * a.tokens)) {
        const mm = perRun(c, "MatMulNBits");
        const others = [...c.byOp.entries()].filter(([op]) => op !== "MatMulNBits").sort((a, b) => b[1] - a[1]).slice(0, 3);
        console.log(
          `${`${c.rows} × ${c.tokens}`.padEnd(14)} ${String(c.runs).padStart(5)} ${perRun(c).toFixed(2).padStart(8)} ${kernelMs(c).toFixed(2).padStart(8)} ${mm.toFixed(2).padStart(12)} ${`${((mm / kernelMs(c)) * 100).toFixed(0)}%`.padStart(6)}  ${others.map(([op, ms]) => `${op} ${(ms / c.runs).toFixed(2)}`).join(", ")}`,
        );
      }
      if (prefill !== undefined) {
        const measured = (prefill.tokens * 1000) / perRun(prefill);
        const floor = (prefill.tokens * 1000) / perRun(prefill, "MatMulNBits");
        console.log(`prefill: ${measured.toFixed(1)} tok/s measured (${(measured / llamaPrefill).toFixed(2)}× llama.cpp); MatMulNBits alone would allow ${floor.toFixed(1)} tok/s = ${(floor / llamaPrefill).toFixed(2)}× llama.cpp`);
      }
      if (one !== undefined) {
        const floor = 1000 / perRun(one, "MatMulNBits");
        console.log(`decode, 1 row: ${(1000 / perRun(one)).toFixed(1)} steps/s measured (${(1000 / perRun(one) / llamaDecode).toFixed(2)}× llama.cpp); MatMulNBits alone would allow ${floor.toFixed(1)} = ${(floor / llamaDecode).toFixed(2)}× llama.cpp`);
      }
      if (one !== undefined && eight !== undefined) {
        const mmRatio = perRun(eight, "MatMulNBits") / perRun(one, "MatMulNBits");
        const bound = (8 * perRun(one)) / perRun(eight, "MatMulNBits");
        console.log(`decode, 8 rows: step ${(perRun(eight) / perRun(one)).toFixed(2)}× a 1-row step (8 streams / 1 ≈ ${((8 * perRun(one)) / perRun(eight)).toFixed(2)}×); MatMulNBits ${mmRatio.toFixed(2)}× its 1-row time, so 8 streams / 1 ≤ ${bound.toFixed(2)}× even if every other op were free`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
