/**
 * ONNX decoder folders as LoadedModels (spec, weights, fingerprint, chat template), in two layouts:
 *
 * - "optimum": an Optimum / onnx-community export: <dir>/config.json + tokenizer files, and onnx/model.onnx (or
 *   model.onnx) with external data next to it. The spec comes from config.json.
 * - "onepass": the folder `onepass convert --to onnx` writes: model.onnx + model.onnx.data + onepass.json (the
 *   spec and the fingerprint of the weights the graph was built from) + tokenizer files.
 *
 * This module only reads files: tapping the graph (graph/surgery.ts) and running it (engine/) happen downstream.
 * The WeightSource lists the graph's float initializers (f32/f16/bf16) under their ONNX names; packed integer
 * initializers (MatMulNBits blocks, scales' zero points) are not listed.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema, TensorProto_DataLocation, TensorProto_DataType, type ModelProto, type TensorProto } from "onnx-buf";
import { ModelFormatError, UnsupportedModelError } from "../../errors.js";
import { fingerprintFile } from "../fingerprint.js";
import { parseHfConfig, readChatTemplate, readJsonFile } from "../hf/index.js";
import { bf16ToF32, bytesToFloats, f16ToF32, type FloatStorage } from "../../numeric/half.js";
import type { LoadedModel, ModelSpec, TensorDType, TensorInfo, WeightSource } from "../spec.js";
import { tableWeightSource } from "../weight-source.js";
import { openForReading, readExactly } from "../file-read.js";

/** The manifest file of a `onepass convert --to onnx` folder. */
export const ONEPASS_MANIFEST = "onepass.json";

export interface OnnxModelFiles {
  layout: "optimum" | "onepass";
  /** The folder holding config.json / onepass.json and the tokenizer files. */
  dir: string;
  /** The .onnx file (its external data files are resolved against its folder). */
  modelPath: string;
  /** The graph's output names (e.g. whether it already has `hidden_states`). */
  outputs: string[];
}

/** A LoadedModel read from an ONNX decoder folder; `onnx` says which graph file to run. */
export interface LoadedOnnxModel extends LoadedModel {
  format: "onnx";
  onnx: OnnxModelFiles;
}

export function isOnnxModel(model: LoadedModel): model is LoadedOnnxModel {
  return model.format === "onnx" && (model as Partial<LoadedOnnxModel>).onnx !== undefined;
}

/**
 * Which ONNX layout a folder (or .onnx file) is, or undefined when it is none. `path` may be the folder or the
 * .onnx file itself (then config.json / onepass.json is beside it, or one level up from an onnx/ folder).
 */
export function detectOnnxLayout(path: string, modelFile?: string): Omit<OnnxModelFiles, "outputs"> | undefined {
  if (!existsSync(path)) return undefined;
  if (statSync(path).isFile()) {
    if (!path.toLowerCase().endsWith(".onnx")) return undefined;
    const folder = dirname(resolve(path));
    if (existsSync(join(folder, ONEPASS_MANIFEST))) return { layout: "onepass", dir: folder, modelPath: path };
    const dir = basename(folder) === "onnx" && !existsSync(join(folder, "config.json")) ? dirname(folder) : folder;
    return { layout: "optimum", dir, modelPath: path };
  }
  if (modelFile === undefined && existsSync(join(path, ONEPASS_MANIFEST)) && existsSync(join(path, "model.onnx"))) {
    return { layout: "onepass", dir: path, modelPath: join(path, "model.onnx") };
  }
  for (const c of modelFile !== undefined ? [modelFile] : [join("onnx", "model.onnx"), "model.onnx"]) {
    if (existsSync(join(path, c))) return { layout: "optimum", dir: path, modelPath: join(path, c) };
  }
  return undefined;
}

/** Loads an ONNX decoder folder (see detectOnnxLayout). `modelFile` picks another .onnx file in an export folder. */
export async function loadOnnxModel(path: string, options: { modelFile?: string } = {}): Promise<LoadedOnnxModel> {
  const layout = detectOnnxLayout(path, options.modelFile);
  if (layout === undefined) {
    const looked = options.modelFile ?? "onnx/model.onnx, model.onnx";
    throw new ModelFormatError(`no ONNX decoder found (looked for ${looked})`, { file: path, field: options.modelFile ?? "onnx/model.onnx" });
  }
  const { dir, modelPath } = layout;
  let proto: ModelProto;
  try {
    proto = fromBinary(ModelProtoSchema, readFileSync(modelPath));
  } catch (e) {
    throw new ModelFormatError(`not a readable ONNX ModelProto: ${(e as Error).message}`, { file: modelPath }, { cause: e });
  }
  const graph = proto.graph;
  if (graph === undefined) throw new ModelFormatError("the ONNX model has no graph", { file: modelPath, field: "graph" });
  const modelDir = dirname(modelPath);
  const tensors = new Map<string, OnnxTensor>();
  const externalFiles = new Set<string>();
  for (const t of graph.initializer) {
    const location = externalLocation(t, modelPath);
    if (location !== undefined) externalFiles.add(location.file);
    const dtype = ONNX_FLOAT_TYPES[t.dataType];
    if (dtype !== undefined) tensors.set(t.name, { info: { name: t.name, shape: t.dims.map(Number), dtype }, tensor: location === undefined ? t : undefined, location });
  }
  for (const f of externalFiles) {
    if (!existsSync(join(modelDir, f))) throw new ModelFormatError("external data file is missing", { file: join(modelDir, f), field: "external_data.location" });
  }

  let spec: ModelSpec;
  let fingerprint: string;
  if (layout.layout === "onepass") {
    const manifestPath = join(dir, ONEPASS_MANIFEST);
    const manifest = readJsonFile(manifestPath);
    spec = specFromManifest(manifest.spec, manifestPath);
    if (typeof manifest.fingerprint !== "string" || !/^sha256:[0-9a-f]{64}(\+[a-z0-9-]+)?$/.test(manifest.fingerprint)) {
      throw new ModelFormatError("expected the sha256 fingerprint of the weights the graph was built from", { file: manifestPath, field: "fingerprint" });
    }
    // The graph is a deterministic build of these weights: probes trained on the source model apply as they are.
    fingerprint = manifest.fingerprint;
  } else {
    const configFile = join(dir, "config.json");
    const generationFile = join(dir, "generation_config.json");
    spec = parseHfConfig(readJsonFile(configFile), configFile, readJsonFile(generationFile, true), generationFile).spec;
    const parts = [`${basename(modelPath)} ${await fingerprintFile(modelPath)}`];
    for (const f of [...externalFiles].sort()) parts.push(`${f} ${await fingerprintFile(join(modelDir, f))}`);
    fingerprint = `sha256:${createHash("sha256").update(parts.join("\n")).digest("hex")}`;
  }
  const model: LoadedOnnxModel = {
    spec,
    weights: onnxWeightSource(modelPath, tensors),
    fingerprint,
    format: "onnx",
    onnx: { ...layout, outputs: graph.output.map((o) => o.name) },
  };
  const chatTemplate = readChatTemplate(dir);
  if (chatTemplate !== undefined) model.chatTemplate = chatTemplate;
  return model;
}

const ONNX_FLOAT_TYPES: Partial<Record<number, TensorDType>> = {
  [TensorProto_DataType.FLOAT]: "f32",
  [TensorProto_DataType.FLOAT16]: "f16",
  [TensorProto_DataType.BFLOAT16]: "bf16",
};

interface ExternalLocation {
  file: string;
  offset: number;
  length?: number;
}

interface OnnxTensor {
  info: TensorInfo;
  /** The initializer itself, when its data is inside the .onnx file. */
  tensor?: TensorProto;
  location?: ExternalLocation;
}

function externalLocation(t: TensorProto, modelPath: string): ExternalLocation | undefined {
  if (t.dataLocation !== TensorProto_DataLocation.EXTERNAL) return undefined;
  const get = (key: string) => t.externalData.find((e) => e.key === key)?.value;
  const file = get("location");
  if (file === undefined || file.includes("..") || file.startsWith("/")) {
    throw new ModelFormatError(`external data location ${JSON.stringify(file)} is not a file beside the model`, { file: modelPath, field: `${t.name}.external_data.location` });
  }
  const offset = Number(get("offset") ?? 0);
  const length = get("length") !== undefined ? Number(get("length")) : undefined;
  if (!Number.isSafeInteger(offset) || offset < 0 || (length !== undefined && (!Number.isSafeInteger(length) || length < 0))) {
    throw new ModelFormatError(`bad external data offset/length`, { file: modelPath, field: `${t.name}.external_data` });
  }
  return { file, offset, length };
}

function onnxWeightSource(modelPath: string, tensors: Map<string, OnnxTensor>): WeightSource {
  return tableWeightSource(modelPath, tensors, (t) => readInitializer(modelPath, t), () => {}, "float initializer");
}

/** An initializer's values as float32 [shape], from raw_data, float_data/int32_data, or its external data file. */
function readInitializer(modelPath: string, t: OnnxTensor): Float32Array {
  const n = t.info.shape.reduce((a, b) => a * b, 1);
  const width = t.info.dtype === "f32" ? 4 : 2;
  let raw: Uint8Array | undefined;
  if (t.location !== undefined) {
    const file = join(dirname(modelPath), t.location.file);
    const length = t.location.length ?? n * width;
    if (length !== n * width) throw new ModelFormatError(`external data length ${length} ≠ ${n} × ${width} bytes`, { file, field: t.info.name, offset: t.location.offset });
    const fd = openForReading(file);
    try {
      raw = readExactly(fd, file, t.location.offset, length, t.info.name);
    } finally {
      closeSync(fd);
    }
  } else if (t.tensor !== undefined && t.tensor.rawData.length > 0) {
    raw = t.tensor.rawData;
    if (raw.length !== n * width) throw new ModelFormatError(`raw_data has ${raw.length} bytes, expected ${n * width}`, { file: modelPath, field: t.info.name });
  }
  if (raw !== undefined) return bytesToFloats(raw, t.info.dtype as FloatStorage); // [shape]; only ONNX_FLOAT_TYPES are listed
  const out = new Float32Array(n); // [shape]
  // typed fields: FLOAT in float_data; FLOAT16/BFLOAT16 bit patterns in int32_data
  const values = t.info.dtype === "f32" ? t.tensor?.floatData : t.tensor?.int32Data;
  if (values === undefined || values.length !== n) throw new ModelFormatError(`initializer holds ${values?.length ?? 0} values, expected ${n}`, { file: modelPath, field: t.info.name });
  for (let i = 0; i < n; i++) out[i] = t.info.dtype === "f32" ? values[i] : t.info.dtype === "f16" ? f16ToF32(values[i]) : bf16ToF32(values[i]);
  return out;
}

/** The ModelSpec stored in onepass.json, checked field by field. */
function specFromManifest(value: unknown, file: string): ModelSpec {
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new ModelFormatError("expected the model spec object", { file, field: "spec" });
  const spec = { ...(value as Record<string, unknown>) };
  // onepass.json written before the rename called the block count "layers"
  if (spec.blocks === undefined && "layers" in spec) {
    spec.blocks = spec.layers;
    delete spec.layers;
  }
  for (const k of ["blocks", "dim", "ffnDim", "heads", "kvHeads", "headDim", "vocabSize", "contextLength", "ropeDim"]) {
    const v = spec[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new ModelFormatError(`expected a positive integer, got ${JSON.stringify(v)}`, { file, field: `spec.${k}` });
  }
  for (const k of ["rmsNormEps", "ropeTheta"]) {
    if (typeof spec[k] !== "number" || !((spec[k] as number) > 0)) throw new ModelFormatError(`expected a positive number`, { file, field: `spec.${k}` });
  }
  if (!["llama", "qwen2", "qwen3"].includes(spec.architecture as string)) {
    throw new UnsupportedModelError(`architecture ${JSON.stringify(spec.architecture)} is not supported`, { file, field: "spec.architecture" });
  }
  if (!Array.isArray(spec.eosTokenIds) || !spec.eosTokenIds.every((x) => Number.isInteger(x))) {
    throw new ModelFormatError("expected a list of token ids", { file, field: "spec.eosTokenIds" });
  }
  return spec as unknown as ModelSpec;
}
