/** Public probe API (re-exported from src/index.ts). */
export { Probe, softmaxRows, type ProbeConfig, type ProbeKind, type ProbeShape, type ProbeInput, type ProbeOutput } from "./probe.js";
export type { PoolKind } from "./aggregators/pooling.js";
export type { FixedToken } from "./aggregators/fixed.js";
export type { Aggregator, AggregateOut } from "./aggregators/types.js";
export { makeBatch, type ProbeBatch } from "../tensor/batch.js";
export { Tape, Tensor as ProbeTensor, type DType as ProbeDType, type RowMask } from "../tensor/autograd.js";
export { gemm, gemmJs, kernelStats, setForceJsKernel, probeThreads, ORT_MIN_MACS, ORT_MULTITHREAD_MACS, type GemmShape } from "../tensor/kernel.js";
export { attention, setFusedAttention, type AttentionDims } from "../tensor/sdpa.js";
export {
  trainProbe, defaultSelectionMetric, predictSource, arraySource, subset, stratifiedSplit, cosineLr, AdamW,
  type ExampleSource, type TrainOptions, type TrainResult, type TrainProgress, type EpochRecord, type SelectionMetric, type ResolvedTrainOptions,
} from "./train.js";
export { searchProbe, sampleTrial, meanStd, SEARCH_SPACE, type SearchOptions, type SearchResult, type Trial } from "./search.js";
export {
  accuracy, macroF1, binaryF1, classScores, confusionMatrix, averagePrecision, rocAuc, rocCurve, prCurve, ece, calibrationBins,
  chooseThreshold, thresholdPredictions, evaluate, argmaxRows, type MetricReport, type ClassScores,
} from "./metrics.js";
export { saveProbe, loadProbe, PROBE_JSON, PROBE_WEIGHTS, type ProbeMeta, type ProbeMetaInput, type ProbeModelInfo, type LoadedProbe } from "./artifact.js";
export { evaluateProbe, type Evaluation } from "./evaluate.js";
export { cacheSource } from "./cache-source.js";
// The probes draw from the same generator as the sampler; the older name stays.
export { Rng as ProbeRng } from "../numeric/rng.js";
export { responseTracker, type ResponseTracker, type ResponseProbabilities } from "./response.js";
export { CompiledProbes, compiledProbesFor, compileProbeGraph, ProjectedMha, projectedMhaFor, mhaSummaryRequest, type CompiledOutput } from "./compiled.js";
export { SummaryProbes, summaryProbesFor, readsSummaries } from "./summary.js";
export { labelIndexMap, parseLabelMap } from "./label-map.js";
export {
  probeHook, loadProbes, generateWithProbes, responseMonitor,
  type ResponseReading, type ResponseMonitor, type ResponseMonitorOptions,
  type Classification, type ProbePolicy, type ProbeHook, type ProbeHookOptions, type PromptTokenization, type ProbedGeneration,
} from "./live.js";
