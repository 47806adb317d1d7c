/**
 * onepass public API: the CLI and the server use exactly these exports. Test scaffolding (random models, the
 * float64 reference forward pass) is in `onepass/testing`; the CLI's progress bar stays with the CLI.
 */
export * from "./errors.js";
export * from "./model/spec.js";
export { HiddenStates } from "./types/hidden.js";
export { TapSummary, type SummaryRequest, type SummaryGates, type SummaryProjections } from "./types/summary.js";
export type { Tokenizer, EncodeOptions, DecodeOptions, ChatMessage } from "./tokenizer/types.js";
export { loadModel, defaultModelPath, summarizeModel } from "./model/load.js";
export type { ModelSummary } from "./model/load.js";
export { loadGguf, readGgufHeader } from "./model/gguf/index.js";
export type { GgufHeader, GgufMetadataEntry, GgufTensorEntry } from "./model/gguf/index.js";
export { fingerprintFile } from "./model/fingerprint.js";
export { writeGguf } from "./model/gguf/index.js";
export type { WriteGgufOptions, TensorInput, MetadataInput, TypedMetadataValue } from "./model/gguf/index.js";
export {
  tokenizerFromGgufMetadata,
  tokenizerFromHfFolder,
  renderChatTemplate,
  chatTemplateFor,
  encodeChat,
  createTextStreamer,
  DEFAULT_CHAT_TEMPLATE,
} from "./tokenizer/index.js";
export { tokenizerFromGguf } from "./model/gguf/index.js";
export type { ChatTemplateSource, RenderChatOptions, TextStreamer, TextStreamerOptions } from "./tokenizer/index.js";
export { loadHfFolder } from "./model/hf/index.js";
export { openSafetensors, writeSafetensors } from "./model/safetensors.js";
export type { SafetensorsFile, SafetensorsTensorInfo, SafetensorsTensorInput } from "./model/safetensors.js";
export { convertModel, QUANTISE_INT4_STAGE, WRITE_TENSORS_STAGE } from "./convert/index.js";
export type { ConvertOptions, ConvertResult } from "./convert/index.js";
export { quantizeWeightsInt4, quantizeModelInt4, quantizeInt4Blocks, dequantizeInt4Blocks } from "./model/quantize.js";
export type { QuantizeInt4Options, Int4WeightSource, Int4Scheme } from "./model/quantize.js";
export { createDecoderSession, openOnnxDecoderSession, resolveRunSettings, type DecoderSessionOptions, type OrtRunOptions, type OnnxModelSource } from "./engine/session.js";
export { machineProfile, settingsFromFeatures, hasInt8Dot, type MachineProfile, type RunSettings } from "./engine/tuning.js";
export { BatchScheduler, sessionRunner, type BatchSchedulerOptions, type SequenceRunner } from "./engine/batch.js";
export { BUILD_GRAPH_STAGE, buildDecoderGraph, type DecoderBuildOptions, type DecoderGraphInfo, type ProgressCallback, type ProgressEvent } from "./graph/decoder.js";
export { ensureDecoderGraph, defaultGraphCacheDir, type CachedGraph } from "./graph/cache.js";
export { addHiddenStateTaps, tapOnnxFile, findResidualStream, HIDDEN_STATES_OUTPUT } from "./graph/surgery.js";
export type { ResidualStream, TapOptions, TappedModel } from "./graph/surgery.js";
export { loadOnnxModel, isOnnxModel, detectOnnxLayout, ONEPASS_MANIFEST } from "./model/onnx/index.js";
export type { LoadedOnnxModel, OnnxModelFiles } from "./model/onnx/index.js";
export { loadOnnxExport, openOnnxModelSession, onnxRunSource } from "./engine/onnx-model.js";
export type { OnnxExport, OnnxSessionOptions } from "./engine/onnx-model.js";
export { Engine, type EngineOptions, type EngineStats, type GenerateRequest } from "./engine/engine.js";
export { generate, planGeneration, Generation, checkGenerateOptions } from "./engine/generate.js";
export type {
  GenerateOptions,
  GenerateChunk,
  GenerateResult,
  GenerateTimings,
  FinishReason,
  PrefillHook,
  PrefillDecision,
  PrefillInfo,
  DecodeStep,
  DecodeDecision,
  DecodeStepHook,
} from "./engine/generate.js";
export { Rng } from "./numeric/rng.js";
export { Sampler, argmax, topKIndices, selectNucleus, samplingDistribution, type SamplingOptions } from "./engine/sampler.js";
export { StopStringMatcher, type StopCheck } from "./engine/stop.js";
export type { DecoderSession, ForwardPass, ForwardOptions, BatchDecoder, SequenceHandle } from "./engine/types.js";
export { loadDataset, loadPreset, loadDatasetArg, resolveDataDir, datasetHash, DATASET_PRESETS } from "./data/datasets.js";
export type { Dataset, DatasetTask, Example, DatasetFile, DatasetFormat, DatasetPreset, LoadOptions, PresetOptions } from "./data/datasets.js";
export { extractFeatures, openFeatureCache, estimateFeatureBytes, summarize, textHash } from "./data/features.js";
export type {
  FeatureCache,
  FeatureBatch,
  FeatureManifest,
  FeatureMode,
  HiddenStateSource,
  TokenizationSettings,
  ExtractOptions,
  ExtractProgress,
  ExtractResult,
  SizeEstimate,
  IndexEntry,
  OpenOptions as FeatureCacheOpenOptions,
} from "./data/features.js";
export { engineSource, type EngineSourceOptions } from "./data/source.js";
export { encodeF16, decodeF16, encodeBf16, decodeBf16, f32ToF16, f16ToF32, f32ToBf16, bf16ToF32 } from "./numeric/half.js";
// Older public names of the scalar f16 conversions.
export { f32ToF16 as f32ToF16Bits, f16ToF32 as f16BitsToF32 } from "./numeric/half.js";
export * from "./probe/index.js";
export { reportHtml, integerTicks } from "./pages/report.js";
export * from "./serve/index.js";
export { renderPlayground, type PlaygroundInfo } from "./pages/playground.js";
export * from "./baselines/index.js";
export * from "./bench/index.js";
