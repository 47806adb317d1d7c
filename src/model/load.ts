/** One entry point for every checkpoint format: dispatch on what the path is. */
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { assertRegularFile } from "../util/fs-errors.js";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { InvalidArgumentError, ModelFormatError, UnsupportedModelError } from "../errors.js";
import type { LoadedModel } from "./spec.js";
import { loadGguf } from "./gguf/index.js";
import { loadHfFolder } from "./hf/index.js";
import { detectOnnxLayout, loadOnnxModel } from "./onnx/index.js";

/** Absolute path of the bundled stories260K.gguf (dist/src/model/load.js → ../../../assets). */
export function defaultModelPath(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "../../../assets/stories260K.gguf");
}

/** What a model folder may hold, for the error naming what was looked for. */
const FOLDER_KINDS =
  "config.json + model.safetensors or model.safetensors.index.json (Hugging Face), " +
  "config.json + onnx/model.onnx or model.onnx (Optimum / onnx-community export), " +
  "onepass.json + model.onnx (onepass convert --to onnx)";

/**
 * Load a model from a .gguf file, a Hugging Face folder (config.json + safetensors + tokenizer files), an
 * Optimum / onnx-community ONNX export folder (or its .onnx file), or a `onepass convert --to onnx` folder.
 * ONNX models come back as LoadedOnnxModel (format "onnx"): the engine runs their graph rather than building one.
 */
export async function loadModel(path: string): Promise<LoadedModel> {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw new InvalidArgumentError(`model path does not exist (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { file: path }, { cause: err });
  }
  if (!st.isDirectory()) assertRegularFile(path); // a FIFO or device: fail before any open blocks
  if (st.isDirectory()) {
    const hasConfig = existsSync(join(path, "config.json"));
    // A Hugging Face repo may ship safetensors and an onnx/ export side by side: the safetensors win (our graph).
    if (hasConfig && (existsSync(join(path, "model.safetensors")) || existsSync(join(path, "model.safetensors.index.json")))) {
      return loadHfFolder(path);
    }
    const onnx = detectOnnxLayout(path);
    if (onnx !== undefined && (onnx.layout === "onepass" || hasConfig)) return loadOnnxModel(path);
    if (hasConfig) return loadHfFolder(path); // names the missing safetensors file
    throw new UnsupportedModelError(`not a model folder (looked for ${FOLDER_KINDS})`, { file: path, field: "config.json" });
  }
  if (path.toLowerCase().endsWith(".onnx")) return loadOnnxModel(path);
  if (path.toLowerCase().endsWith(".gguf") || startsWithGgufMagic(path)) return loadGguf(path);
  throw new ModelFormatError("unrecognised model file (expected a .gguf file, an .onnx file, or a model folder)", { file: path });
}

function startsWithGgufMagic(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const head = Buffer.alloc(4);
    return readSync(fd, head, 0, 4, 0) === 4 && head.toString("latin1") === "GGUF";
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** What `onepass inspect` shows: the spec plus a histogram of tensor storage types. */
export interface ModelSummary {
  path: string;
  format: LoadedModel["format"];
  fingerprint: string;
  spec: LoadedModel["spec"];
  tensors: number;
  parameters: number;
  /** dtype → number of tensors stored in it. */
  dtypes: Record<string, number>;
  /** dtype → number of parameters stored in it. */
  dtypeParameters: Record<string, number>;
  hasChatTemplate: boolean;
}

export function summarizeModel(model: LoadedModel): ModelSummary {
  const dtypes: Record<string, number> = {};
  const dtypeParameters: Record<string, number> = {};
  let parameters = 0;
  const list = model.weights.list();
  for (const t of list) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    parameters += n;
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
    dtypeParameters[t.dtype] = (dtypeParameters[t.dtype] ?? 0) + n;
  }
  return {
    path: model.weights.path,
    format: model.format,
    fingerprint: model.fingerprint,
    spec: model.spec,
    tensors: list.length,
    parameters,
    dtypes,
    dtypeParameters,
    hasChatTemplate: model.chatTemplate !== undefined,
  };
}
