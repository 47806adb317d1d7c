/**
 * Running ONNX decoder folders (model/onnx/): the graph as it is when it already has the stacked
 * `hidden_states` output (onepass convert folders, exports tapped before), else tapped by graph surgery in memory
 * (the export folder is never written) and opened from bytes with its external data read from the original
 * folder. Either way the session is engine/session.ts's one implementation.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { GraphError, ModelFormatError } from "../errors.js";
import { addHiddenStateTaps, HIDDEN_STATES_OUTPUT, type ResidualStream } from "../graph/surgery.js";
import { readJsonFile } from "../model/hf/index.js";
import { loadOnnxModel, ONEPASS_MANIFEST, type LoadedOnnxModel } from "../model/onnx/index.js";
import type { ModelSpec } from "../model/spec.js";
import { tokenizerFromHfFolder } from "../tokenizer/hf.js";
import type { PipelineTokenizer } from "../tokenizer/pipeline.js";
import { openOnnxDecoderSession, type OnnxModelSource, type OrtRunOptions } from "./session.js";
import type { DecoderSession } from "./types.js";

export interface OnnxSessionOptions extends OrtRunOptions {
  /** Add the hidden-state taps when the graph has none (default true). */
  taps?: boolean;
}

/** The graph to run for an ONNX model: tapped in memory when it needs taps, else the file itself. */
export function onnxRunSource(model: LoadedOnnxModel, taps = true): { source: OnnxModelSource; stream?: ResidualStream } {
  const { modelPath, outputs } = model.onnx;
  if (!taps || outputs.includes(HIDDEN_STATES_OUTPUT)) return { source: { path: modelPath } };
  let original: Uint8Array;
  try {
    original = readFileSync(modelPath);
  } catch (e) {
    throw new GraphError(`cannot read ONNX model: ${(e as Error).message}`, { file: modelPath }, { cause: e });
  }
  const tapped = addHiddenStateTaps(original, { file: modelPath, blocks: model.spec.blocks, dim: model.spec.dim });
  return { source: { bytes: tapped.bytes, externalDataDir: dirname(modelPath), name: modelPath }, stream: tapped.stream };
}

/** A DecoderSession over an ONNX model's graph (tapped unless `taps: false`). */
export async function openOnnxModelSession(model: LoadedOnnxModel, options: OnnxSessionOptions = {}): Promise<DecoderSession> {
  return openOnnxDecoderSession(onnxRunSource(model, options.taps ?? true).source, model.spec, withManifestAccuracyLevel(model, options));
}

/**
 * A onepass convert folder's graph has its MatMulNBits nodes at the accuracy level recorded in onepass.json
 * (`quantize.accuracyLevel`, or top-level `accuracyLevel`): that, not the default 4, is the decode session's
 * level; otherwise a folder built at level 0 would open a second, identical prefill session at level 0.
 * Decided here because only this module reads the manifest; session.ts's `accuracyLevel` option means "the
 * level the graph file has".
 */
function withManifestAccuracyLevel<T extends OrtRunOptions>(model: LoadedOnnxModel, options: T): T {
  if (model.onnx.layout !== "onepass") return options;
  const file = join(model.onnx.dir, ONEPASS_MANIFEST);
  const manifest = readJsonFile(file);
  const quantize = manifest.quantize as { accuracyLevel?: unknown } | null | undefined;
  const field = quantize?.accuracyLevel !== undefined ? "quantize.accuracyLevel" : "accuracyLevel";
  const level = quantize?.accuracyLevel ?? manifest.accuracyLevel;
  if (level === undefined) return options;
  if (level !== 0 && level !== 1 && level !== 2 && level !== 3 && level !== 4) {
    throw new ModelFormatError(`expected a MatMulNBits accuracy level 0..4, got ${JSON.stringify(level)}`, { file, field });
  }
  return { ...options, accuracyLevel: level };
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
  /** How the hidden states were found; undefined when the graph already had a `hidden_states` output. */
  readonly stream?: ResidualStream;
  /** A DecoderSession (batch 1, KV cache when the export has one) with hidden states. */
  createSession(options?: OrtRunOptions): Promise<DecoderSession>;
}

/**
 * An ONNX export folder (or .onnx file) with its tokenizer, tapped once: for callers that want the pieces
 * rather than an Engine. `modelFile` picks another .onnx file inside the folder.
 */
export async function loadOnnxExport(path: string, options: { modelFile?: string } = {}): Promise<OnnxExport> {
  const model = await loadOnnxModel(path, options);
  const tokenizer = await tokenizerFromHfFolder(model.onnx.dir);
  const { source, stream } = onnxRunSource(model);
  const exp: OnnxExport = {
    dir: model.onnx.dir,
    modelPath: model.onnx.modelPath,
    spec: model.spec,
    tokenizer,
    fingerprint: model.fingerprint,
    stream,
    createSession: (sessionOptions?: OrtRunOptions) => openOnnxDecoderSession(source, model.spec, withManifestAccuracyLevel(model, sessionOptions ?? {})),
  };
  return model.chatTemplate !== undefined ? { ...exp, chatTemplate: model.chatTemplate } : exp;
}
