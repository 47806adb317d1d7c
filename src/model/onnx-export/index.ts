/**
 * Existing ONNX decoder exports (Optimum / onnx-community layout):
 *
 *   <dir>/config.json, tokenizer.json, tokenizer_config.json, generation_config.json
 *   <dir>/onnx/model.onnx  (+ model.onnx_data / model.onnx.data, referenced as external data)
 *
 * `loadOnnxExport(dir)` reads the spec from config.json (the HF config parser), the tokenizer from the folder,
 * adds the stacked hidden-state output by graph surgery (in memory: the export folder is never written), and
 * opens DecoderSessions over the tapped graph with the weights read from the original external-data files.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema, TensorProto_DataLocation, type ModelProto } from "onnx-buf";
import { GraphError, InvalidArgumentError } from "../../errors.js";
import type { DecoderSession } from "../../engine/types.js";
import { addHiddenStateTaps, HIDDEN_STATES_OUTPUT, type ResidualStream } from "../../graph/surgery.js";
import { tokenizerFromHfFolder } from "../../tokenizer/hf.js";
import type { PipelineTokenizer } from "../../tokenizer/pipeline.js";
import { fingerprintFile } from "../fingerprint.js";
import { parseHfConfig, readJsonFile } from "../hf/index.js";
import type { ModelSpec } from "../spec.js";
import { openOnnxExportSession, type OnnxExportSessionOptions } from "./session.js";

export { openOnnxExportSession, type OnnxExportSessionOptions, type OnnxModelSource } from "./session.js";

export interface LoadOnnxExportOptions {
  /** Model file relative to the export folder (default onnx/model.onnx, else model.onnx). */
  modelFile?: string;
}

export interface OnnxExport {
  /** The export folder (config.json, tokenizer files). */
  readonly dir: string;
  /** The original .onnx file (left untouched). */
  readonly modelPath: string;
  readonly spec: ModelSpec;
  readonly tokenizer: PipelineTokenizer;
  /** sha256 over the .onnx file and every external-data file it references. */
  readonly fingerprint: string;
  readonly chatTemplate?: string;
  /** How the hidden states were found; undefined when the export already had a `hidden_states` output. */
  readonly stream?: ResidualStream;
  /** The tapped model (the original bytes plus the tap nodes). */
  readonly tappedModel: Uint8Array;
  /** A DecoderSession (batch 1, KV cache when the export has one) with hidden states. */
  createSession(options?: OnnxExportSessionOptions): Promise<DecoderSession>;
}

/** Locates the .onnx file and the folder holding config.json. `path` may be the folder or the .onnx file. */
function locate(path: string, modelFile?: string): { dir: string; modelPath: string } {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new InvalidArgumentError(`ONNX export path does not exist`, { file: path }, { cause: e });
  }
  if (st.isFile()) {
    if (!path.toLowerCase().endsWith(".onnx")) throw new InvalidArgumentError(`expected an export folder or an .onnx file`, { file: path });
    const folder = dirname(resolve(path));
    // onnx/model.onnx: config.json is one level up; otherwise beside the file.
    const dir = basename(folder) === "onnx" && !existsSync(join(folder, "config.json")) ? dirname(folder) : folder;
    return { dir, modelPath: path };
  }
  const candidates = modelFile !== undefined ? [modelFile] : [join("onnx", "model.onnx"), "model.onnx"];
  for (const c of candidates) {
    const p = join(path, c);
    if (existsSync(p)) return { dir: path, modelPath: p };
  }
  throw new GraphError(`no ONNX model found (looked for ${candidates.join(", ")})`, { file: path, field: candidates[0] });
}

/** The external-data files a model references (relative to its folder). */
function externalDataFiles(model: ModelProto): string[] {
  const files = new Set<string>();
  for (const t of model.graph?.initializer ?? []) {
    if (t.dataLocation !== TensorProto_DataLocation.EXTERNAL) continue;
    const location = t.externalData.find((e) => e.key === "location")?.value;
    if (location !== undefined) files.add(location);
  }
  return [...files].sort();
}

/** Loads an ONNX decoder export and taps its residual stream (see graph/surgery.ts). */
export async function loadOnnxExport(path: string, options: LoadOnnxExportOptions = {}): Promise<OnnxExport> {
  const { dir, modelPath } = locate(path, options.modelFile);
  const configFile = join(dir, "config.json");
  const generationFile = join(dir, "generation_config.json");
  const { spec } = parseHfConfig(readJsonFile(configFile), configFile, readJsonFile(generationFile, true), generationFile);
  const tokenizer = await tokenizerFromHfFolder(dir);

  let original: Uint8Array;
  try {
    original = readFileSync(modelPath);
  } catch (e) {
    throw new GraphError(`cannot read ONNX model: ${(e as Error).message}`, { file: modelPath }, { cause: e });
  }
  let model: ModelProto;
  try {
    model = fromBinary(ModelProtoSchema, original);
  } catch (e) {
    throw new GraphError(`not an ONNX ModelProto: ${(e as Error).message}`, { file: modelPath }, { cause: e });
  }
  const alreadyTapped = model.graph?.output.some((o) => o.name === HIDDEN_STATES_OUTPUT) ?? false;
  const tapped = alreadyTapped ? undefined : addHiddenStateTaps(original, { file: modelPath, layers: spec.layers, dim: spec.dim });
  const tappedModel = tapped?.bytes ?? original;

  // Fingerprint: the graph file plus its weights.
  const modelDir = dirname(modelPath);
  const parts = [`${basename(modelPath)} ${await fingerprintFile(modelPath)}`];
  for (const f of externalDataFiles(model)) {
    const p = join(modelDir, f);
    if (!existsSync(p)) throw new GraphError(`external data file is missing`, { file: p, field: "external_data.location" });
    parts.push(`${f} ${await fingerprintFile(p)}`);
  }
  const fingerprint = `sha256:${createHash("sha256").update(parts.join("\n")).digest("hex")}`;

  const exp: OnnxExport = {
    dir,
    modelPath,
    spec,
    tokenizer,
    fingerprint,
    stream: tapped?.stream,
    tappedModel,
    createSession: (sessionOptions?: OnnxExportSessionOptions) =>
      openOnnxExportSession({ bytes: tappedModel, externalDataDir: modelDir, name: modelPath }, spec, sessionOptions),
  };
  const template = tokenizer.chatTemplate?.template;
  return template !== undefined ? { ...exp, chatTemplate: template } : exp;
}
