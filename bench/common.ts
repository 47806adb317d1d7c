// Shared by the benchmarks: numeric flags and the cached random-weight Qwen2.5-0.5B-shaped Q4_0 GGUF.
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { writeRandomModel } from "../src/model/gguf/writer.js";

/** The number after `--name` on the command line, or `fallback`. */
export function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const benchDir = join(process.env.ONEPASS_CACHE_DIR ?? join(homedir(), ".cache", "onepass"), "bench");

/** Where the Qwen2.5-0.5B-shaped model is cached (written once by ensureQwenShapedModel). */
export const QWEN_SHAPED_PATH = join(benchDir, "qwen2.5-0.5b-shape-q4_0.gguf");

/** Writes the random Q4_0 model with Qwen2.5-0.5B shapes unless it is cached; returns its path. */
export function ensureQwenShapedModel(): string {
  if (existsSync(QWEN_SHAPED_PATH)) return QWEN_SHAPED_PATH;
  mkdirSync(benchDir, { recursive: true });
  const tmp = `${QWEN_SHAPED_PATH}.tmp-${process.pid}`;
  const t0 = performance.now();
  writeRandomModel(tmp, {
    architecture: "qwen2", blocks: 24, dim: 896, heads: 14, kvHeads: 2, headDim: 64, ffnDim: 4864,
    vocabSize: 151936, dtype: "q4_0", seed: 2024, tiedEmbeddings: true, contextLength: 32768, name: "random-qwen2.5-0.5b-shape",
  });
  renameSync(tmp, QWEN_SHAPED_PATH);
  console.log(`wrote ${QWEN_SHAPED_PATH} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return QWEN_SHAPED_PATH;
}
