/**
 * Random weights for cost measurements (weights do not change timings): GGUF models of real models' shapes,
 * cached on disk, and probes of any kind and shape.
 */
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { writeRandomModel, type RandomModelOptions } from "../model/gguf/writer.js";
import type { Engine } from "../engine/engine.js";
import type { LoadedProbe } from "../probe/artifact.js";
import { Probe, type ProbeConfig, type ProbeShape } from "../probe/probe.js";

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

/**
 * A probe of `config` with small deterministic weights (`k` offsets them, to tell several apart) and, when
 * `config.standardize`, made-up input statistics: its softmaxes stay finite and it costs what a trained one does.
 */
export function randomBenchProbe(config: ProbeConfig, shape: ProbeShape, k = 0): Probe {
  const probe = new Probe(config, shape, { seed: k });
  for (const t of probe.params().values()) for (let i = 0; i < t.data.length; i++) t.data[i] = (Math.sin(i * 12.9898 + k) * 0.5) / Math.sqrt(shape.dim);
  if (config.standardize === true) {
    const n = shape.layers * shape.dim;
    probe.norm = { mean: Float32Array.from({ length: n }, (_, i) => Math.cos(i) * 0.1), std: Float32Array.from({ length: n }, (_, i) => 1 + (i % 3)) }; // [L+1, d] each
  }
  return probe;
}

/** randomBenchProbe for `engine`'s hidden states (2 classes), loaded as if from a folder named `name`. */
export function randomLoadedProbe(engine: Engine, config: ProbeConfig, name = `bench-${config.kind}`): LoadedProbe {
  const shape = { layers: engine.spec.blocks + 1, dim: engine.spec.dim, classes: 2 };
  const probe = randomBenchProbe(config, shape);
  return {
    probe, dir: name,
    meta: { format: "onepass-probe", version: 1, config, shape, labelNames: ["safe", "unsafe"], model: { fingerprint: engine.fingerprint, blocks: engine.spec.blocks, dim: engine.spec.dim }, parameterCount: { aggregator: probe.parameterCount(), head: 2 * shape.dim + 2 }, createdAt: new Date(0).toISOString() },
  };
}
