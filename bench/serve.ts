// The server end to end, over HTTP on 127.0.0.1 (streaming chat, as a client sees it): per-request latency with
// probes on (engine with taps + probes) vs off (engine without taps, no probes), time to the classifications
// chunk vs time to the first token, and requests/s and tokens/s at concurrency 1, 4 and 16.
// Models: the built-in stories260K with the built-in probes, and the random-weight Q4_0 GGUF with Qwen2.5-0.5B
// shapes (bench/common.ts) with a scoring probe of random weights (it costs what a trained one does).
// Prints, asserts nothing. Usage: npm run bench:serve [-- --runs N --decode N --threads N --requests N --no-qwen --no-stories]
// (each concurrency level sends max(requests, concurrency) requests)
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Engine } from "../src/engine/engine.js";
import { saveProbe } from "../src/probe/artifact.js";
import { Probe } from "../src/probe/probe.js";
import { startServer } from "../src/serve/server.js";
import { builtinProbeSpecs, type ProbeSpec } from "../src/serve/probes.js";
import { arg, ensureQwenShapedModel, median } from "./common.js";

const RUNS = arg("runs", 7);
const DECODE = arg("decode", 16);
const THREADS = arg("threads", 2);
const REQUESTS = arg("requests", 16);
const PROMPT = "Write a short story about a girl named Lily who finds a red ball in the park and shares it with her friend Tom.";

interface Timing { classifications: number | null; firstToken: number | null; total: number; tokens: number }

/** One streaming chat request; client-side times in ms from sending. */
async function streamChat(url: string): Promise<Timing> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: PROMPT }], max_tokens: DECODE, temperature: 0, stream: true, stream_options: { include_usage: true } }),
  });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const out: Timing = { classifications: null, firstToken: null, total: 0, tokens: 0 };
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const ev = JSON.parse(line.slice(6));
      if (ev.classifications !== undefined && out.classifications === null) out.classifications = performance.now() - t0;
      if (ev.choices?.[0]?.delta?.content && out.firstToken === null) out.firstToken = performance.now() - t0;
      if (ev.usage !== undefined) out.tokens = ev.usage.completion_tokens;
    }
  }
  out.total = performance.now() - t0;
  return out;
}

const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)];

interface Measured { latency: Timing[]; throughput: Array<{ concurrency: number; rps: number; tps: number }> }

/** `total` requests from `concurrency` clients; requests/s and generated tokens/s. */
async function throughputAt(url: string, concurrency: number): Promise<{ concurrency: number; rps: number; tps: number }> {
  const total = Math.max(REQUESTS, concurrency);
  const t0 = performance.now();
  let next = 0;
  let tokens = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      next++;
      const t = await streamChat(url); // (not `tokens += await …`: that reads tokens before the await)
      tokens += t.tokens;
    }
  }));
  const s = (performance.now() - t0) / 1000;
  return { concurrency, rps: total / s, tps: tokens / s };
}

/**
 * Both servers run side by side (probes off: an engine without taps and no probes; on: taps + probes) and
 * take turns request by request, so load from other processes hits them alike.
 */
async function measure(path: string, probes: ProbeSpec[]): Promise<{ off: Measured; on: Measured }> {
  const engines = [await Engine.load(path, { taps: false, threads: THREADS }), await Engine.load(path, { taps: true, threads: THREADS })];
  // no 429 and no timeout here: at concurrency 16 on a large model the last request waits minutes by design
  const limits = { maxQueue: 64, requestTimeoutMs: 3_600_000 };
  const servers = [await startServer({ engine: engines[0], port: 0, probes: [], ...limits }), await startServer({ engine: engines[1], port: 0, probes, ...limits })];
  const out: Measured[] = [{ latency: [], throughput: [] }, { latency: [], throughput: [] }];
  try {
    for (const s of servers) await streamChat(s.url); // warm-up
    for (let r = 0; r < RUNS; r++) for (let i = 0; i < 2; i++) out[i].latency.push(await streamChat(servers[i].url));
    for (const concurrency of [1, 4, 16]) for (let i = 0; i < 2; i++) out[i].throughput.push(await throughputAt(servers[i].url, concurrency));
    return { off: out[0], on: out[1] };
  } finally {
    for (const s of servers) await s.close();
    for (const e of engines) await e.dispose();
  }
}

async function benchModel(label: string, path: string, probes: () => ProbeSpec[]): Promise<void> {
  console.log(`\n${label}: streaming chat, ${DECODE} tokens, ${THREADS} threads; latency: median/p95 of ${RUNS}; throughput: max(${REQUESTS}, concurrency) requests per level`);
  const { off, on } = await measure(path, probes());
  const f = (x: number) => x.toFixed(1).padStart(9);
  const row = (name: string, xs: number[]) => console.log(`  ${name.padEnd(34)} ${f(median(xs))} ${f(p95(xs))}`);
  console.log(`  ${"ms".padEnd(34)} ${"median".padStart(9)} ${"p95".padStart(9)}`);
  row("total, probes off", off.latency.map((t) => t.total));
  row("total, probes on", on.latency.map((t) => t.total));
  row("first token, probes off", off.latency.map((t) => t.firstToken ?? NaN));
  row("classifications chunk, probes on", on.latency.map((t) => t.classifications ?? NaN));
  row("first token, probes on", on.latency.map((t) => t.firstToken ?? NaN));
  const ratio = (q: (xs: number[]) => number) => q(on.latency.map((t) => t.total)) / q(off.latency.map((t) => t.total));
  console.log(`  on/off total latency: median ×${ratio(median).toFixed(3)}, p95 ×${ratio(p95).toFixed(3)}`);
  console.log(`  ${"concurrency".padEnd(12)} ${"req/s off".padStart(10)} ${"req/s on".padStart(10)} ${"tok/s off".padStart(10)} ${"tok/s on".padStart(10)}`);
  off.throughput.forEach((o, i) => {
    const n = on.throughput[i];
    console.log(`  ${String(o.concurrency).padEnd(12)} ${o.rps.toFixed(2).padStart(10)} ${n.rps.toFixed(2).padStart(10)} ${o.tps.toFixed(1).padStart(10)} ${n.tps.toFixed(1).padStart(10)}`);
  });
}

async function main(): Promise<void> {
  if (!process.argv.includes("--no-stories")) await benchModel("stories260K + built-in probes (sentiment, safety)", "assets/stories260K.gguf", builtinProbeSpecs);
  if (process.argv.includes("--no-qwen")) return;
  const qwen = ensureQwenShapedModel();
  const dir = join(tmpdir(), `onepass-bench-serve-${process.pid}`);
  try {
    const spec = (await Engine.load(qwen, { taps: false, threads: 1 }).then(async (e) => {
      const s = { fingerprint: e.fingerprint, blocks: e.spec.blocks, dim: e.spec.dim };
      await e.dispose();
      return s;
    }));
    const probe = new Probe({ kind: "scoring" }, { layers: spec.blocks + 1, dim: spec.dim, classes: 2 }, { seed: 1 });
    saveProbe(dir, probe, { labelNames: ["safe", "unsafe"], model: spec, tokenization: { addBos: false, template: "chat", maxTokens: null } });
    await benchModel("random Qwen2.5-0.5B-shaped Q4_0 + one scoring probe", qwen, () => [{ dir, name: "scoring" }]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
