/** Random-weight GGUF models of real models' shapes, cached on disk, for cost measurements (weights do not change timings). */
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { writeRandomModel, type RandomModelOptions } from "../model/gguf/writer.js";

/** Where the benchmarks keep their random models: $ONEPASS_CACHE_DIR/bench or ~/.cache/onepass/bench. */
export function benchModelDir(): string {
  return join(process.env.ONEPASS_CACHE_DIR ?? join(homedir(), ".cache", "onepass"), "bench");
}

/** The cached random model `file` (written once, atomically by rename, with options `o`); returns its path. */
export function randomBenchModel(file: string, o: RandomModelOptions): string {
  const path = join(benchModelDir(), file);
  if (existsSync(path)) return path;
  mkdirSync(benchModelDir(), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeRandomModel(tmp, o);
  renameSync(tmp, path);
  return path;
}

/** Where the Qwen2.5-0.5B-shaped model is cached (written once by ensureQwenShapedModel). */
export const QWEN_SHAPED_PATH = join(benchModelDir(), "qwen2.5-0.5b-shape-q4_0.gguf");

/** The random Q4_0 model with Qwen2.5-0.5B shapes (written unless cached); returns its path. */
export function ensureQwenShapedModel(): string {
  return randomBenchModel("qwen2.5-0.5b-shape-q4_0.gguf", {
    architecture: "qwen2", blocks: 24, dim: 896, heads: 14, kvHeads: 2, headDim: 64, ffnDim: 4864,
    vocabSize: 151936, dtype: "q4_0", seed: 2024, tiedEmbeddings: true, contextLength: 32768, name: "random-qwen2.5-0.5b-shape",
  });
}

/** The random Q4_0 model with Llama-3.2-1B shapes (the larger guard of the Qwen-shaped cost run). */
export function ensureLlama1bShapedModel(): string {
  return randomBenchModel("llama-3.2-1b-shape-q4_0.gguf", {
    architecture: "llama", blocks: 16, dim: 2048, heads: 32, kvHeads: 8, headDim: 64, ffnDim: 8192,
    vocabSize: 128256, dtype: "q4_0", seed: 11, tiedEmbeddings: true, contextLength: 8192, name: "random-llama-3.2-1b-shape",
  });
}
