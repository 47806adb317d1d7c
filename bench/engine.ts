// Engine benchmark: onepass (ORT decoder graph, taps on / off) vs node-llama-cpp on the same random-weight
// Q4_0 GGUF with Qwen2.5-0.5B shapes. Prefill tokens/s at T = 512 and decode tokens/s at context 512.
// Usage: npm run bench:engine [-- --threads N --runs N --decode N --accuracy 0|4 --no-llama]
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../src/model/load.js";
import { writeRandomModel } from "../src/model/gguf/writer.js";
import { createDecoderSession } from "../src/engine/session.js";
import type { LoadedModel } from "../src/model/spec.js";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const THREADS = arg("threads", 2);
const RUNS = arg("runs", 3);
const PROMPT = 512;
const DECODE = arg("decode", 32);
const ACCURACY = arg("accuracy", 4) as 0 | 4;
const WITH_LLAMA = !process.argv.includes("--no-llama");

const root = process.env.ONEPASS_CACHE_DIR ?? join(homedir(), ".cache", "onepass");
const benchDir = join(root, "bench");
const ggufPath = join(benchDir, "qwen2.5-0.5b-shape-q4_0.gguf");

function ensureModel(): void {
  if (existsSync(ggufPath)) return;
  mkdirSync(benchDir, { recursive: true });
  const tmp = `${ggufPath}.tmp-${process.pid}`;
  const t0 = performance.now();
  writeRandomModel(tmp, {
    architecture: "qwen2", layers: 24, dim: 896, heads: 14, kvHeads: 2, headDim: 64, ffnDim: 4864,
    vocabSize: 151936, dtype: "q4_0", seed: 2024, tiedEmbeddings: true, contextLength: 32768, name: "random-qwen2.5-0.5b-shape",
  });
  renameSync(tmp, ggufPath);
  console.log(`wrote ${ggufPath} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

function promptTokens(vocab: number): number[] {
  let s = 12345;
  return Array.from({ length: PROMPT }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return 3 + (s % (vocab - 3));
  });
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rssMiB = () => process.memoryUsage().rss / 2 ** 20;

interface Result { prefillTps: number; decodeTps: number; prefillMs: number; rssMiB?: number; extra?: string }

async function benchOnepass(model: LoadedModel, taps: boolean): Promise<Result> {
  const tBuild = performance.now();
  const s = await createDecoderSession(model, { taps, threads: THREADS, accuracyLevel: ACCURACY });
  const buildMs = performance.now() - tBuild;
  const prompt = promptTokens(model.spec.vocabSize);
  await s.forward(prompt.slice(0, 16), { hidden: taps }); // warm-up
  const prefill: number[] = [];
  const decode: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    s.reset();
    const t0 = performance.now();
    const run = await s.forward(prompt, { hidden: taps });
    prefill.push(performance.now() - t0);
    if (taps && run.hidden?.data.length !== (model.spec.layers + 1) * PROMPT * model.spec.dim) throw new Error("taps missing");
    let next = 0;
    const t1 = performance.now();
    for (let i = 0; i < DECODE; i++) next = (await s.forward([(next + i) % model.spec.vocabSize])).logits.length;
    decode.push((performance.now() - t1) / DECODE);
  }
  const rss = rssMiB();
  await s.dispose();
  const pm = median(prefill);
  return { prefillTps: (PROMPT * 1000) / pm, decodeTps: 1000 / median(decode), prefillMs: pm, rssMiB: rss, extra: `session ready in ${(buildMs / 1000).toFixed(1)} s` };
}

async function benchLlamaCpp(): Promise<Result> {
  const { getLlama } = await import("node-llama-cpp");
  const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never });
  const model = await llama.loadModel({ modelPath: ggufPath });
  const context = await model.createContext({ contextSize: 1024, batchSize: PROMPT, threads: THREADS });
  const seq = context.getSequence();
  const prompt = promptTokens(151936) as never[];
  await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 16)); // warm-up
  const prefill: number[] = [];
  const decode: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    await seq.clearHistory();
    const t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(prompt);
    prefill.push(performance.now() - t0);
    // decode: each yielded token after the first is one single-token evaluation at context ≈ 512
    let n = 0;
    let t1 = 0;
    for await (const _token of seq.evaluate([prompt[0]], { temperature: 0 })) {
      if (n === 0) t1 = performance.now();
      if (++n > DECODE) break;
    }
    decode.push((performance.now() - t1) / DECODE);
  }
  await context.dispose();
  await model.dispose();
  const pm = median(prefill);
  return { prefillTps: (PROMPT * 1000) / pm, decodeTps: 1000 / median(decode), prefillMs: pm };
}

async function main(): Promise<void> {
  ensureModel();
  console.log(`model ${ggufPath}\nthreads ${THREADS}, prompt ${PROMPT}, decode ${DECODE} steps, ${RUNS} runs (median), MatMulNBits accuracy_level ${ACCURACY}`);
  const model = await loadModel(ggufPath);
  const off = await benchOnepass(model, false);
  const on = await benchOnepass(model, true);
  model.weights.close();
  const llama = WITH_LLAMA ? await benchLlamaCpp() : undefined;

  const row = (name: string, r: Result) =>
    `${name.padEnd(26)} ${r.prefillTps.toFixed(1).padStart(10)} ${r.decodeTps.toFixed(1).padStart(10)} ${r.rssMiB !== undefined ? r.rssMiB.toFixed(0).padStart(9) : "".padStart(9)}  ${r.extra ?? ""}`;
  console.log(`\n${"engine".padEnd(26)} ${"prefill/s".padStart(10)} ${"decode/s".padStart(10)} ${"RSS MiB".padStart(9)}`);
  console.log(row("onepass, taps off", off));
  console.log(row("onepass, taps on", on));
  if (llama) console.log(row("node-llama-cpp 3.21.1", llama));
  console.log(`\ntap cost: ${(((on.prefillMs - off.prefillMs) / off.prefillMs) * 100).toFixed(1)}% of prefill (taps on vs off, incl. copying [L+1,T,d] out)`);
  if (llama) {
    console.log(`onepass taps / llama.cpp: prefill ${(on.prefillTps / llama.prefillTps).toFixed(2)}×, decode ${(on.decodeTps / llama.decodeTps).toFixed(2)}×`);
    console.log(`onepass no taps / llama.cpp: prefill ${(off.prefillTps / llama.prefillTps).toFixed(2)}×, decode ${(off.decodeTps / llama.decodeTps).toFixed(2)}×`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
