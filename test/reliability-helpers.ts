// Shared by reliability.test.ts and fuzz-cli.test.ts (not a test file itself).
import { extractFeatures, type HiddenStateSource } from "../src/data/features.js";
import { Worker } from "node:worker_threads";
import { plantedTask } from "./probe-synthetic.js";

/** A small planted-signal feature cache (4 layers × d 16), `n` rows, classes alternating. */
export async function syntheticCache(dir: string, n = 60, seed = 3, labelNames = ["neg", "pos"], template: "raw" | "chat" = "raw"): Promise<void> {
  const task = plantedTask(n, { layers: 4, dim: 16, layer: 1, position: 0, seed });
  const byText = new Map(task.hidden.map((h, i) => [`prompt ${i}`, h]));
  const source: HiddenStateSource = {
    fingerprint: "model-A", layers: 4, dim: 16, tokenization: { addBos: true, template },
    async hidden(text) { return byText.get(text)!; },
  };
  const examples = task.labels.map((label, i) => ({ text: `prompt ${i}`, label }));
  await extractFeatures({ source, examples, labelNames, outDir: dir, mode: "full" });
}


/** How one in-process CLI run ended (code -1: still running after the cap, the worker was restarted). */
export interface Outcome { code: number; stdout: string; stderr: string; ms: number }

let worker: Worker | undefined;
let nextId = 0;
const pending = new Map<number, (o: Omit<Outcome, "ms">) => void>();

function cliWorker(): Worker {
  if (worker === undefined) {
    const w = new Worker(new URL("./cli-worker.js", import.meta.url), { stdout: true, stderr: true });
    w.stdout.resume(); // anything written outside a job is dropped, not buffered for ever
    w.stderr.resume();
    w.on("message", (m: { id: number } & Omit<Outcome, "ms">) => pending.get(m.id)?.(m));
    w.on("error", (e) => { for (const [id, done] of pending) { pending.delete(id); done({ code: -2, stdout: "", stderr: `worker error: ${e.stack ?? e}` }); } });
    w.unref();
    worker = w;
  }
  return worker;
}

/** Stops the CLI worker (the next runCaptured starts a fresh one). */
export async function closeCliWorker(): Promise<void> {
  const w = worker;
  worker = undefined;
  await w?.terminate();
}

/**
 * Runs one argv through runCli in a long-lived worker thread (with `env` set for its duration) and returns
 * its exit code and output; a run still going after `capMs` is reported as code -1 and its worker replaced.
 */
export async function runCaptured(argv: string[], capMs = 60_000, env: Record<string, string | undefined> = {}): Promise<Outcome> {
  const w = cliWorker();
  const id = nextId++;
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    new Promise<Omit<Outcome, "ms">>((resolve) => {
      pending.set(id, resolve);
      w.postMessage({ id, argv, env });
    }),
    new Promise<Omit<Outcome, "ms">>((resolve) => (timer = setTimeout(() => resolve({ code: -1, stdout: "", stderr: "" }), capMs))),
  ]);
  clearTimeout(timer);
  pending.delete(id);
  if (result.code === -1) await closeCliWorker();
  return { ...result, ms: performance.now() - t0 };
}
