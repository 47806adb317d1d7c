/**
 * `convertModel`: the library side of `onepass convert`.
 * - to "hf":   any loadable model (GGUF file or HF folder) → a Hugging Face folder (see export.ts).
 * - to "onnx": any loadable model → onepass's own decoder graph (model.onnx + model.onnx.data + onepass.json),
 *              optionally with int4 weights (MatMulNBits, block 32) quantised at build time, plus the
 *              tokenizer files: the folder is self-contained and `Engine.load(folder)` runs it as it is.
 * It sits above model/ and graph/ (it reads checkpoints and builds graphs), below the CLI.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fsError, lstatOrUndefined, makeDirs, withFs } from "../util/fs-errors.js";
import { InvalidArgumentError, UnsupportedModelError } from "../errors.js";
import { buildDecoderGraph, DECODER_BUILDER_VERSION, type ProgressCallback } from "../graph/decoder.js";
import { TensorNames, type LoadedModel, type ModelSpec, type WeightSource } from "../model/spec.js";
import { loadModel } from "../model/load.js";
import { ONEPASS_MANIFEST } from "../model/onnx/index.js";
import { quantizeModelInt4, type Int4Scheme } from "../model/quantize.js";
import { hfSpecOf, writeHfFolder, writeTokenizerFiles, type HfDType } from "./hf-export.js";
import { delegatingWeightSource } from "../model/weight-source.js";

export interface ConvertOptions {
  to: "hf" | "onnx";
  /** Output folder (created if needed; files in it are replaced atomically one by one). */
  out: string;
  /** to "hf": storage dtype (default f32). */
  dtype?: HfDType;
  /** to "onnx": quantise linear weights to int4 at build time. */
  quantize?: "int4";
  /** to "onnx" with int4: MatMulNBits accuracy_level (default 4 = int8 activations; 0 = fp32). */
  accuracyLevel?: 0 | 1 | 2 | 3 | 4;
  /** to "onnx" with int4: quantisation scheme (default see quantize.ts). */
  int4Scheme?: Int4Scheme;
  /** to "onnx" with int4: quantise the LM head too (default false). */
  int4Head?: boolean;
  /** to "onnx": add the stacked hidden-state output (default true). */
  taps?: boolean;
  /**
   * Hears long work: to "hf" stage "writing tensors" (one per tensor written); to "onnx" stage "building graph"
   * (see buildDecoderGraph) and, with int4, stage "quantising int4" (one per matrix quantised, interleaved with
   * the build, which quantises as it goes). Silent when absent.
   */
  onProgress?: ProgressCallback;
}

export const WRITE_TENSORS_STAGE = "writing tensors";
export const QUANTISE_INT4_STAGE = "quantising int4";

export interface ConvertResult {
  out: string;
  /** Files written (absolute or relative as `out` was given). */
  files: string[];
  /** Spec of the written model (ropeStyle "half" for HF output). */
  spec: ModelSpec;
}

/** Converts the model at `modelPath` (a .gguf file or an HF folder). */
export async function convertModel(modelPath: string, options: ConvertOptions): Promise<ConvertResult> {
  if (options.to !== "hf" && options.to !== "onnx") throw new InvalidArgumentError(`--to must be hf or onnx, got ${String(options.to)}`, { field: "to" });
  if (options.out === undefined || options.out === "") throw new InvalidArgumentError("an output folder is required", { field: "out" });
  if (options.to === "hf" && options.quantize !== undefined) {
    throw new InvalidArgumentError("--quantize applies to --to onnx (HF folders hold float weights)", { field: "quantize" });
  }
  if (options.to === "onnx" && options.dtype !== undefined && options.dtype !== "f32") {
    throw new InvalidArgumentError("--dtype applies to --to hf (the ONNX graph computes in f32)", { field: "dtype" });
  }
  checkConvertTarget(options.out, options.to, modelPath);
  const model = await loadModel(modelPath);
  try {
    if (model.format === "onnx") {
      throw new UnsupportedModelError("converting from an ONNX model is not supported (convert its GGUF or Hugging Face source)", { file: modelPath });
    }
    if (options.to === "hf") {
      const counted = options.onProgress === undefined ? model : { ...model, weights: countingTensorsWritten(model, options.onProgress) };
      const files = await writeHfFolder(counted, options.out, { dtype: options.dtype, sourcePath: modelPath });
      return { out: options.out, files, spec: hfSpecOf(model.spec) };
    }
    return await writeOnnx(model, modelPath, options);
  } catch (err) {
    throw fsError(err, options.out, "write the converted model");
  } finally {
    model.weights.close();
  }
}

/**
 * Nothing a user wrote is replaced: `out` must not exist, be an empty folder, or (to "onnx") be an earlier
 * `convert --to onnx` folder (its onepass.json says format "onepass-decoder"). Anything else, including the
 * source model's own folder, is an InvalidArgumentError naming it.
 */
function checkConvertTarget(out: string, to: "hf" | "onnx", modelPath: string): void {
  const refuse = (why: string) => {
    throw new InvalidArgumentError(`${why}; convert writes only into a new or empty folder${to === "onnx" ? " or an earlier --to onnx output" : ""}: choose another --out`, { file: out, field: "out" });
  };
  if (resolve(out) === resolve(modelPath)) refuse("is the source model");
  const st = lstatOrUndefined(out);
  if (st === undefined) return;
  if (!st.isDirectory()) refuse("exists and is not a folder");
  const names = withFs(out, "list", () => readdirSync(out));
  if (names.length === 0) return;
  if (to === "onnx" && names.includes(ONEPASS_MANIFEST)) {
    let format: unknown;
    try {
      format = (JSON.parse(readFileSync(join(out, ONEPASS_MANIFEST), "utf8")) as { format?: unknown }).format;
    } catch {
      format = undefined;
    }
    if (format === "onepass-decoder") return;
  }
  refuse(`is not empty (holds ${JSON.stringify(names[0])})`);
}

async function writeOnnx(source: LoadedModel, modelPath: string, options: ConvertOptions): Promise<ConvertResult> {
  const int4 = options.quantize === "int4";
  if (options.quantize !== undefined && !int4) throw new InvalidArgumentError(`--quantize must be int4, got ${String(options.quantize)}`, { field: "quantize" });
  const quantised = int4 ? quantizeModelInt4(source, { scheme: options.int4Scheme, includeOutput: options.int4Head }) : source;
  const model = int4 && options.onProgress !== undefined ? { ...quantised, weights: countingInt4Reads(quantised, options.int4Head ?? false, options.onProgress) } : quantised;
  makeDirs(options.out);
  const tmp = mkdtempSync(join(options.out, ".convert-"));
  try {
    const accuracyLevel = options.accuracyLevel ?? 4;
    buildDecoderGraph(model.spec, model.weights, join(tmp, "model.onnx"), { taps: options.taps ?? true, accuracyLevel, int4: true, onProgress: options.onProgress });
    const manifest = {
      format: "onepass-decoder",
      builderVersion: DECODER_BUILDER_VERSION,
      source: modelPath,
      sourceFingerprint: source.fingerprint,
      fingerprint: model.fingerprint,
      spec: model.spec,
      taps: options.taps ?? true,
      // MatMulNBits accuracy_level of the graph (also for exact Q4 GGUF blocks without --quantize): the engine's decode level
      accuracyLevel,
      quantize: int4 ? { type: "int4", blockSize: 32, scheme: options.int4Scheme ?? "symmetric", accuracyLevel, lmHead: options.int4Head ?? false } : null,
    };
    writeFileSync(join(tmp, ONEPASS_MANIFEST), JSON.stringify(manifest, null, 2) + "\n");
    const files = await writeTokenizerFiles(source, modelPath, options.out);
    // the manifest last: a folder is recognised as ours (and loadable) only once it is complete
    for (const name of ["model.onnx.data", "model.onnx", ONEPASS_MANIFEST]) {
      if (!existsSync(join(tmp, name))) continue;
      renameSync(join(tmp, name), join(options.out, name));
      files.push(join(options.out, name));
    }
    return { out: options.out, files, spec: model.spec };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * `model.weights` reporting each tensor the HF writer reads: it reads every tensor it writes exactly once, as it
 * reaches it (the tied LM head is not written).
 */
function countingTensorsWritten(model: LoadedModel, onProgress: ProgressCallback): WeightSource {
  const inner = model.weights;
  const skipped = (name: string) => name === TensorNames.output && model.spec.tiedEmbeddings;
  const total = inner.list().filter((t) => !skipped(t.name)).length;
  let done = 0;
  onProgress({ stage: WRITE_TENSORS_STAGE, done, total, unit: "tensor" });
  return {
    ...delegatingWeightSource(inner),
    readF32(name) {
      const values = inner.readF32(name); // shape of `name`
      if (!skipped(name) && done < total) onProgress({ stage: WRITE_TENSORS_STAGE, done: ++done, total, unit: "tensor" });
      return values;
    },
  };
}

/**
 * `model.weights` (int4-quantising) reporting each linear matrix the graph builder gets in int4 form: the seven
 * per layer, plus output.weight with `head` (quantizeWeightsInt4's set; a native 4-bit pass-through counts too).
 */
function countingInt4Reads(model: LoadedModel, head: boolean, onProgress: ProgressCallback): WeightSource {
  const inner = model.weights;
  const matrices = new Set<string>();
  for (let i = 0; i < model.spec.blocks; i++) {
    const n = TensorNames.block(i);
    for (const name of [n.q, n.k, n.v, n.o, n.gate, n.up, n.down]) if (inner.has(name)) matrices.add(name);
  }
  if (head && inner.has(TensorNames.output)) matrices.add(TensorNames.output);
  const total = matrices.size;
  let done = 0;
  onProgress({ stage: QUANTISE_INT4_STAGE, done, total, unit: "matrix" });
  return {
    ...delegatingWeightSource(inner),
    readInt4(name) {
      const blocks = inner.readInt4?.(name);
      // each matrix once, even if read again
      if (blocks !== undefined && matrices.delete(name)) onProgress({ stage: QUANTISE_INT4_STAGE, done: ++done, total, unit: "matrix" });
      return blocks;
    },
  };
}
