/** GGUF checkpoints: header parsing, ModelSpec, lazy dequantising WeightSource, and a writer. */
import { UnsupportedModelError } from "../../errors.js";
import { fingerprintFile } from "../fingerprint.js";
import type { LoadedModel } from "../spec.js";
import { readGgufHeader } from "./reader.js";
import { MetadataView, specFromGguf } from "./spec-from-metadata.js";
import { ROPE_FREQS_TENSOR, ropeScalingFromFreqs } from "./rope-scaling.js";
import { GgufWeightSource } from "./weights.js";

export { readGgufHeader } from "./reader.js";
export type { GgufHeader, GgufMetadataEntry, GgufTensorEntry, GgufValue, GgufScalar } from "./reader.js";
export { GgufWeightSource } from "./weights.js";
export { dequantize } from "./dequant.js";
export { llama3RopeDivisors } from "./rope-scaling.js";

/**
 * Load a GGUF model: validate its header and tensor table, derive the ModelSpec, and open a WeightSource that
 * reads (and dequantises) one tensor at a time.
 */
export async function loadGguf(path: string): Promise<LoadedModel> {
  const header = readGgufHeader(path);
  const { spec, chatTemplate } = specFromGguf(header);
  const weights = new GgufWeightSource(header);
  for (const t of header.tensors) {
    // Every tensor of the model must be readable; fail at load time, not mid-inference.
    if (t.type.dtype === undefined) {
      throw new UnsupportedModelError(`tensor type ${t.type.name} is not supported (onepass reads F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)`, {
        file: path, field: t.name, offset: t.entryOffset,
      });
    }
  }
  let fingerprint: string;
  try {
    if (weights.has(ROPE_FREQS_TENSOR)) {
      const origCtxKey = `${spec.architecture}.rope.scaling.original_context_length`;
      const orig = new MetadataView(header).positiveInt(origCtxKey, false);
      const scaling = ropeScalingFromFreqs(weights.readF32(ROPE_FREQS_TENSOR), spec.ropeTheta, spec.ropeDim, orig, path);
      if (scaling !== undefined) spec.ropeScaling = scaling;
    }
    fingerprint = await fingerprintFile(path);
  } catch (err) {
    weights.close();
    throw err;
  }
  const model: LoadedModel = { spec, weights, fingerprint, format: "gguf", ggufMetadata: header.metadata };
  if (chatTemplate !== undefined) model.chatTemplate = chatTemplate;
  return model;
}
export { tokenizerFromGguf, readGgufVocab, ggufMetadataValues } from "./tokenizer.js";
export { writeGguf, writeRandomModel, randomModelContents } from "./writer.js";
export type { WriteGgufOptions, TensorInput, MetadataInput, TypedMetadataValue, RandomModelOptions } from "./writer.js";
