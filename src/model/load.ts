/** One entry point for every checkpoint format: dispatch on what the path is. */
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { InvalidArgumentError, ModelFormatError, UnsupportedModelError } from "../errors.js";
import type { LoadedModel } from "./spec.js";
import { loadGguf } from "./gguf/index.js";

/** Absolute path of the bundled stories260K.gguf (dist/src/model/load.js → ../../../assets). */
export function defaultModelPath(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "../../../assets/stories260K.gguf");
}

/**
 * Load a model from a .gguf file, or a Hugging Face folder (config.json + safetensors + tokenizer.json).
 * ONNX files are not supported yet.
 */
export async function loadModel(path: string): Promise<LoadedModel> {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw new InvalidArgumentError(`model path does not exist (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { file: path }, { cause: err });
  }
  if (st.isDirectory()) {
    if (!existsSync(join(path, "config.json"))) {
      throw new UnsupportedModelError("folder has no config.json (expected a Hugging Face model folder)", { file: path, field: "config.json" });
    }
    // Imported lazily so this module works before (or without) the HF loader.
    const hfModule = "./hf/index.js";
    const hf = (await import(hfModule)) as { loadHfFolder(dir: string): Promise<LoadedModel> };
    return hf.loadHfFolder(path);
  }
  if (path.toLowerCase().endsWith(".onnx")) {
    throw new UnsupportedModelError("loading ONNX models is not supported yet", { file: path });
  }
  if (path.toLowerCase().endsWith(".gguf") || startsWithGgufMagic(path)) return loadGguf(path);
  throw new ModelFormatError("unrecognised model file (expected a .gguf file or a Hugging Face folder)", { file: path });
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
