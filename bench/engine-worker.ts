// One engine of bench/engine.ts in its own process, so that its peak RSS is its own (in one process the figure
// depended on which engine ran first). Driven over IPC by the parent: it loads the engine, then runs what it is
// told — a prefill + decode round, or n concurrent streams — and reports timings and its peak RSS.
// argv: kind ("onepass" | "llama"), model path, threads, taps, accuracy level[, ORT profile file prefix]. taps: 0 off; 1 the stacked-taps
// graph (tapSummaries: false) with the [L+1, T, d] hidden states fetched by every prefill (the old probe path);
// 2 the summaries graph with what live pooling + scoring + fixed probes fetch (sum, last, max, one gate).
import { Engine } from "../src/engine/engine.js";

const [kind, modelPath, threadsArg, tapsArg, accuracyArg, profilePrefix] = process.argv.slice(2);
const THREADS = Number(threadsArg);
const TAPS = tapsArg === "1" || tapsArg === "2";
const SUMMARIES = tapsArg === "2";
const ACCURACY = Number(accuracyArg) as 0 | 4;

export type WorkerRequest =
  | { op: "round"; prompt: number[]; decode: number }
  | { op: "streams"; prompts: number[][]; newTokens: number }
  | { op: "exit" };

export interface RoundReply {
  prefillMs: number;
  decodeMsPerToken: number;
}

export interface StreamsReply {
  wallMs: number;
  /** Per request: start → last token, and start → first token. */
  latencyMs: number[];
  firstTokenMs: number[];
  /** Per request: start of the streams → each generated token, ms. */
  tokenMs: number[][];
  tokens: number;
  /** onepass: mean sequences per decode run. */
  meanBatch?: number;
}

/** Peak and current RSS of this process, MiB. */
export function memory(): { peakMiB: number; rssMiB: number } {
  return { peakMiB: process.resourceUsage().maxRSS / 1024, rssMiB: process.memoryUsage().rss / 2 ** 20 };
}

interface Worker {
  round(prompt: number[], decode: number): Promise<RoundReply>;
  streams(prompts: number[][], newTokens: number): Promise<StreamsReply>;
  close(): Promise<void>;
}

async function onepassWorker(): Promise<Worker> {
  const engine = await Engine.load(modelPath, { taps: TAPS, tapSummaries: SUMMARIES, threads: THREADS, accuracyLevel: ACCURACY, maxBatch: 16, profilePrefix });
  const L1 = engine.spec.blocks + 1, d = engine.spec.dim;
  // one gate with a two-class probe's 1 + 2 reads (its layer gate and head columns)
  const gate = { weights: Float32Array.from({ length: L1 * d * 4 }, (_, i) => Math.sin(i) / Math.sqrt(d)), bias: new Float32Array(L1), count: 1, readOf: new Int32Array(3) };
  // what a prefill returns for its probes: the stacked tensor, or the summaries
  const probeOutputs = SUMMARIES ? { summary: { max: true, gates: gate } } : { hidden: TAPS };
  await engine.generate({ prompt: [1, 2, 3, 4, 5, 6, 7, 8], maxTokens: 2, temperature: 0, ...probeOutputs }).result; // warm-up
  return {
    async round(prompt, decode) {
      // one request: prefill (hidden states fetched when taps are on), then `decode` tokens
      const r = await engine.generate({ prompt, maxTokens: decode + 1, temperature: 0, eosTokenIds: [], ...probeOutputs }).result;
      return { prefillMs: r.timings.prefillMs, decodeMsPerToken: r.timings.decodeMs / decode };
    },
    async streams(prompts, newTokens) {
      const before = engine.batchStats;
      const t0 = performance.now();
      const latencyMs: number[] = [];
      const firstTokenMs: number[] = [];
      const tokenMs = prompts.map(() => [] as number[]);
      await Promise.all(
        prompts.map(async (prompt, i) => {
          const s = performance.now();
          for await (const chunk of engine.generate({ prompt, maxTokens: newTokens, temperature: 0, eosTokenIds: [] })) {
            if (chunk.token === null) continue;
            if (firstTokenMs[i] === undefined) firstTokenMs[i] = performance.now() - s;
            tokenMs[i].push(performance.now() - t0);
          }
          latencyMs[i] = performance.now() - s;
        }),
      );
      const after = engine.batchStats;
      return {
        wallMs: performance.now() - t0,
        latencyMs,
        firstTokenMs,
        tokenMs,
        tokens: prompts.length * newTokens,
        meanBatch: (after.decodeRows - before.decodeRows) / Math.max(1, after.decodeRuns - before.decodeRuns),
      };
    },
    close: () => engine.dispose(),
  };
}

async function llamaWorker(): Promise<Worker> {
  const { getLlama } = await import("node-llama-cpp");
  const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never });
  const model = await llama.loadModel({ modelPath });
  const context = await model.createContext({ contextSize: 1024, batchSize: 512, threads: THREADS });
  const seq = context.getSequence();
  await seq.evaluateWithoutGeneratingNewTokens([1, 2, 3, 4, 5, 6, 7, 8] as never[]); // warm-up
  return {
    async round(prompt, decode) {
      await seq.clearHistory();
      const t1 = performance.now();
      await seq.evaluateWithoutGeneratingNewTokens(prompt as never[]);
      const prefillMs = performance.now() - t1;
      // each token yielded after the first costs one single-token evaluation
      let n = 0;
      let t2 = 0;
      for await (const _token of seq.evaluate([prompt[0]] as never[], { temperature: 0 })) {
        if (n === 0) t2 = performance.now();
        if (++n > decode) break;
      }
      return { prefillMs, decodeMsPerToken: (performance.now() - t2) / decode };
    },
    async streams(prompts, newTokens) {
      // llama.cpp's own multi-sequence batching: one context with a sequence per stream, evaluated concurrently
      const per = Math.max(...prompts.map((p) => p.length)) + newTokens + 8;
      const ctx = await model.createContext({ contextSize: per * prompts.length, sequences: prompts.length, batchSize: 512, threads: THREADS });
      try {
        const t0 = performance.now();
        const latencyMs: number[] = [];
        const firstTokenMs: number[] = [];
        const tokenMs = prompts.map(() => [] as number[]);
        await Promise.all(
          prompts.map(async (prompt, i) => {
            const s = performance.now();
            const sq = ctx.getSequence();
            let n = 0;
            for await (const _t of sq.evaluate(prompt as never[], { temperature: 0 })) {
              if (n === 0) firstTokenMs[i] = performance.now() - s;
              tokenMs[i].push(performance.now() - t0);
              if (++n >= newTokens) break;
            }
            latencyMs[i] = performance.now() - s;
          }),
        );
        return { wallMs: performance.now() - t0, latencyMs, firstTokenMs, tokenMs, tokens: prompts.length * newTokens };
      } finally {
        await ctx.dispose();
      }
    },
    async close() {
      await context.dispose();
      await model.dispose();
    },
  };
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const worker = kind === "llama" ? await llamaWorker() : await onepassWorker();
  process.send!({ ready: true, loadS: (performance.now() - t0) / 1000, ...memory() });
  process.on("message", async (m: WorkerRequest) => {
    try {
      if (m.op === "round") process.send!({ ...(await worker.round(m.prompt, m.decode)), ...memory() });
      else if (m.op === "streams") process.send!({ ...(await worker.streams(m.prompts, m.newTokens)), ...memory() });
      else {
        await worker.close();
        process.exit(0);
      }
    } catch (e) {
      process.send!({ error: String((e as Error)?.stack ?? e) });
    }
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
