/**
 * Small helpers shared by test files: temporary folders, the bundled model, array comparisons, a seeded PRNG, and a
 * child-process runner for kill-and-resume tests.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Probe, ProbeConfig } from "../src/probe/probe.js";
import { Rng } from "../src/numeric/rng.js";

/** The bundled stories260K checkpoint (tests never read /work/shared). */
export const STORIES260K = "assets/stories260K.gguf";

/** Every probe kind and pooling variant, for tests that compare inference paths. */
export const PROBE_KINDS: ProbeConfig[] = [
  { kind: "pooling", pool: "mean" },
  { kind: "pooling", pool: "max" },
  { kind: "scoring" },
  { kind: "mha", heads: 4, downcast: 4, pool: "mean" },
  { kind: "mha", heads: 2, downcast: 8, pool: "max" },
  { kind: "fixed", token: "last" },
  { kind: "fixed", token: "mean", layer: 2 },
  { kind: "fixed", token: "max", layer: 1 },
];
/** Every parameter of `probe` redrawn N(0, 1.5²/fan-in), in place (the scoring gates start at 0, which would hide gate bugs). */
export function randomizeProbe(probe: Probe, seed: number): Probe {
  const rng = new Rng(seed);
  for (const t of probe.params().values()) {
    const fan = t.shape[t.shape.length - 2] ?? 1;
    for (let i = 0; i < t.data.length; i++) t.data[i] = (rng.normal() * 1.5) / Math.sqrt(fan);
  }
  return probe;
}
export const probeKindLabel = (c: ProbeConfig): string => `${c.kind}${c.pool ? `/${c.pool}` : ""}${c.token ? `/${c.token}` : ""}`;

/** Vocabularies of four tokenizer families (llama.cpp's vocab files) and the built-in model's. */
export const GGUF_VOCABS = [
  "test/fixtures/ggml-vocab/ggml-vocab-llama-spm.gguf",
  "test/fixtures/ggml-vocab/ggml-vocab-phi-3.gguf",
  "test/fixtures/ggml-vocab/ggml-vocab-gpt-2.gguf",
  "test/fixtures/ggml-vocab/ggml-vocab-deepseek-coder.gguf",
  STORIES260K,
];

/** A fresh folder `<os tmp>/onepass-<name>-XXXXXX`; the caller removes it (rmSync(dir, { recursive: true, force: true })). */
export function tempDir(name: string): string {
  return mkdtempSync(join(tmpdir(), `onepass-${name}-`));
}

/** Largest |a[i] − b[i]|; asserts equal lengths. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Index of the largest value (the first on ties). */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Seeded PRNG (mulberry32) returning uniforms in [0, 1), so a failing case can be replayed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Index lines a feature cache in `dir` holds so far (its *.idx.jsonl files and their .part files): the trigger
 * for kill-mid-run tests. A .part file renamed between listing and reading is skipped (counted on the next poll).
 */
export function indexLinesSoFar(dir: string): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const f of readdirSync(dir)) {
    if (!f.includes(".idx.jsonl")) continue;
    try {
      n += readFileSync(join(dir, f), "utf8").split("\n").length - 1;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  return n;
}

/** How a child Node process ended (its whole stdout and stderr). */
export interface ChildRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** True when runNodeScript sent the SIGKILL (the child was still running). */
  killed: boolean;
}

/**
 * Runs `node <script> ...args`. With `killAt`, SIGKILLs the child as soon as the feature cache in `killAt.dir`
 * holds `killAt.n` index lines (polled every 5 ms), to test resuming after a crash. Resolves whatever the exit
 * code; rejects only when the process cannot be started.
 */
export function runNodeScript(script: string, args: string[], killAt?: { dir: string; n: number }): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let killed = false;
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer =
      killAt === undefined
        ? undefined
        : setInterval(() => {
            if (indexLinesSoFar(killAt.dir) >= killAt.n) {
              killed = child.kill("SIGKILL");
              clearInterval(timer);
            }
          }, 5);
    child.on("error", reject);
    child.on("exit", (code) => {
      if (timer) clearInterval(timer);
      resolve({ code, stdout, stderr, killed });
    });
  });
}
