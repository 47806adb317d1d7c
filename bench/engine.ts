// Engine benchmark: onepass (ORT decoder graph, taps on / off) vs node-llama-cpp on the same random-weight
// Q4_0 GGUF with Qwen2.5-0.5B shapes. Prefill tokens/s at T = 512 and decode tokens/s at context 512.
// Usage: npm run bench:engine [-- --threads N --runs N --decode N --accuracy 0|4 --prefill-accuracy 0|4 --no-llama]
// Engines run in turns within each round (this machine is shared: load from other processes moves absolute
// figures by ±30% or more); the table shows the best and the median round.
import { loadModel } from "../src/model/load.js";
import { arg, ensureQwenShapedModel, QWEN_SHAPED_PATH as ggufPath } from "./common.js";
import { createDecoderSession } from "../src/engine/session.js";
import type { LoadedModel } from "../src/model/spec.js";

const THREADS = arg("threads", 2);
const RUNS = arg("runs", 5);
const PROMPT = 512;
const DECODE = arg("decode", 32);
const ACCURACY = arg("accuracy", 4) as 0 | 4;
const PREFILL_ACCURACY = arg("prefill-accuracy", ACCURACY) as 0 | 4;
const WITH_LLAMA = !process.argv.includes("--no-llama");

function promptTokens(vocab: number): number[] {
  let s = 12345;
  return Array.from({ length: PROMPT }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return 3 + (s % (vocab - 3));
  });
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rssMiB = () => process.memoryUsage().rss / 2 ** 20;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One engine under test: a prefill of PROMPT tokens from an empty cache, then DECODE single-token steps. */
interface Engine {
  name: string;
  /** Returns [prefill ms, mean ms per decode step]. */
  round(): Promise<[number, number]>;
  rssDeltaMiB: number;
  readyS: number;
  close(): Promise<void>;
}

async function onepassEngine(model: LoadedModel, taps: boolean): Promise<Engine> {
  const rss0 = rssMiB();
  const t0 = performance.now();
  const s = await createDecoderSession(model, { taps, threads: THREADS, accuracyLevel: ACCURACY, prefillAccuracyLevel: PREFILL_ACCURACY });
  const prompt = promptTokens(model.spec.vocabSize);
  await s.forward(prompt.slice(0, 16), { hidden: taps }); // warm-up
  const readyS = (performance.now() - t0) / 1000;
  return {
    name: `onepass, taps ${taps ? "on" : "off"}`,
    rssDeltaMiB: rssMiB() - rss0,
    readyS,
    async round() {
      s.reset();
      const t1 = performance.now();
      const run = await s.forward(prompt, { hidden: taps });
      const prefill = performance.now() - t1;
      if (taps && run.hidden?.data.length !== (model.spec.layers + 1) * PROMPT * model.spec.dim) throw new Error("taps missing");
      const t2 = performance.now();
      for (let i = 0; i < DECODE; i++) await s.forward([(prompt[i] * 31 + i) % model.spec.vocabSize]);
      return [prefill, (performance.now() - t2) / DECODE];
    },
    close: () => s.dispose(),
  };
}

async function llamaCppEngine(): Promise<Engine> {
  const rss0 = rssMiB();
  const t0 = performance.now();
  const { getLlama } = await import("node-llama-cpp");
  const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never });
  const model = await llama.loadModel({ modelPath: ggufPath });
  const context = await model.createContext({ contextSize: 1024, batchSize: PROMPT, threads: THREADS });
  const seq = context.getSequence();
  const prompt = promptTokens(151936) as never[];
  await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 16)); // warm-up
  const readyS = (performance.now() - t0) / 1000;
  return {
    name: "node-llama-cpp 3.21.1",
    rssDeltaMiB: rssMiB() - rss0,
    readyS,
    async round() {
      await seq.clearHistory();
      const t1 = performance.now();
      await seq.evaluateWithoutGeneratingNewTokens(prompt);
      const prefill = performance.now() - t1;
      // each token yielded after the first costs one single-token evaluation at context ≈ 512
      let n = 0;
      let t2 = 0;
      for await (const _token of seq.evaluate([prompt[0]], { temperature: 0 })) {
        if (n === 0) t2 = performance.now();
        if (++n > DECODE) break;
      }
      return [prefill, (performance.now() - t2) / DECODE];
    },
    async close() {
      await context.dispose();
      await model.dispose();
    },
  };
}

async function main(): Promise<void> {
  ensureQwenShapedModel();
  console.log(`model ${ggufPath}`);
  console.log(`threads ${THREADS}, prompt ${PROMPT}, decode ${DECODE} steps, ${RUNS} interleaved rounds; MatMulNBits accuracy_level ${PREFILL_ACCURACY} (prefill) / ${ACCURACY} (decode)`);
  const model = await loadModel(ggufPath);
  const engines: Engine[] = [await onepassEngine(model, false), await onepassEngine(model, true)];
  if (WITH_LLAMA) engines.push(await llamaCppEngine());
  const results = engines.map(() => ({ prefill: [] as number[], decode: [] as number[] }));
  // engines take turns within each round, so load from other processes hits them alike
  for (let r = 0; r < RUNS; r++) {
    for (let e = 0; e < engines.length; e++) {
      await pause(200);
      const [p, d] = await engines[e].round();
      results[e].prefill.push(p);
      results[e].decode.push(d);
    }
  }
  for (const e of engines) await e.close();
  model.weights.close();

  const stats = results.map((r) => ({
    prefillBest: (PROMPT * 1000) / Math.min(...r.prefill),
    prefillMed: (PROMPT * 1000) / median(r.prefill),
    decodeBest: 1000 / Math.min(...r.decode),
    decodeMed: 1000 / median(r.decode),
    prefillMs: Math.min(...r.prefill),
  }));
  const f = (x: number, w = 9) => x.toFixed(1).padStart(w);
  console.log(`\n${"engine".padEnd(24)} ${"prefill tok/s".padStart(19)} ${"decode tok/s".padStart(19)} ${"+RSS MiB".padStart(9)} ${"ready s".padStart(8)}`);
  console.log(`${"".padEnd(24)} ${"best".padStart(9)} ${"median".padStart(9)} ${"best".padStart(9)} ${"median".padStart(9)}`);
  engines.forEach((e, i) => {
    const s = stats[i];
    console.log(`${e.name.padEnd(24)} ${f(s.prefillBest)} ${f(s.prefillMed)} ${f(s.decodeBest)} ${f(s.decodeMed)} ${f(e.rssDeltaMiB, 9)} ${f(e.readyS, 8)}`);
  });
  const [off, on, cpp] = stats;
  console.log(`\ntap cost: ${(((on.prefillMs - off.prefillMs) / off.prefillMs) * 100).toFixed(1)}% of prefill (best runs, taps on vs off, incl. copying [L+1, T, d] out)`);
  if (cpp !== undefined) {
    const ratio = (a: number, b: number) => (a / b).toFixed(2) + "×";
    console.log(`onepass taps on / llama.cpp:  prefill ${ratio(on.prefillBest, cpp.prefillBest)} (median ${ratio(on.prefillMed, cpp.prefillMed)}), decode ${ratio(on.decodeBest, cpp.decodeBest)} (median ${ratio(on.decodeMed, cpp.decodeMed)})`);
    console.log(`onepass taps off / llama.cpp: prefill ${ratio(off.prefillBest, cpp.prefillBest)}, decode ${ratio(off.decodeBest, cpp.decodeBest)}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
