/**
 * The wire protocol: OpenAI's request and response shapes, taken from the `openai` package's types where they
 * fit (type-only imports: nothing of the client is loaded at run time), plus onepass's extensions — the
 * `classifications` field every generation carries, the `onepass` request field, and /v1/classify.
 */
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionCreateParams,
  ChatCompletionMessageParam,
} from "openai/resources/chat/completions";
import type { Completion, CompletionCreateParams } from "openai/resources/completions";
import type { Moderation, ModerationCreateResponse } from "openai/resources/moderations";
import type { Model } from "openai/resources/models";

export type { ChatCompletionMessageParam };

/** One probe's verdict on a prompt, as it travels with a generation (snake_case like the rest of the API). */
export interface ProbeResult {
  label: string;
  /** P(label) for every label name of the probe. */
  probabilities: Record<string, number>;
  /** The label is one this probe flags (its policy's labels: `block=...` or `annotate=...`). */
  flagged: boolean;
  /** The request was refused because of this probe (block policy). */
  blocked: boolean;
  /** Binary probes: the decision threshold on P(second label). */
  threshold: number | null;
  /** Wall time of the probe on this prompt. */
  probe_ms: number;
  /** Prompt tokens the probe read. */
  tokens: number;
  /** Scoring probes: softmax weights over the L+1 layers (only when asked for, or in the playground). */
  layer_weights?: number[];
  /** How this prompt's tokenisation differs from the probe's training data. */
  warnings?: string[];
}

/** Every probe's verdict, by probe name. */
export type Classifications = Record<string, ProbeResult>;

/**
 * A response probe's reading of the answer so far (`tokens` = generated tokens it has read); `blocked`: the
 * answer was stopped here (finish_reason "content_filter").
 */
export interface ResponseProbeResult extends ProbeResult {
  /** Each label the probe gave and the response token count at which it began (the first reading included). */
  history: Array<{ tokens: number; label: string }>;
}

/** Every response probe's reading, by probe name. */
export type ResponseClassifications = Record<string, ResponseProbeResult>;

/** Per-request timings (onepass extension), ms. */
export interface Timings {
  queue_ms: number;
  prefill_ms: number;
  probe_ms: number;
  decode_ms: number;
  total_ms: number;
  /** From the request's arrival to the classifications (= to the end of prefill + probes). */
  classifications_ms: number | null;
  decode_tokens_per_s: number;
  /** Response probes: time spent updating and reading them, all tokens together. */
  response_probe_ms: number;
}

/** The `onepass` field a request may carry. */
export interface OnepassRequestOptions {
  /** Names of the probes to run on this request (default: all loaded); [] runs none. */
  probes?: string[];
  /** Include the scoring probes' layer weights in the classifications. */
  layer_weights?: boolean;
  /** Names of the response probes to run on this request's answer (default: all loaded); [] runs none. */
  response_probes?: string[];
}

export type ChatRequest = ChatCompletionCreateParams & { onepass?: OnepassRequestOptions };
export type CompletionRequest = CompletionCreateParams & { onepass?: OnepassRequestOptions };

/** onepass's extensions on a response body or on a stream chunk. */
export interface OnepassExtensions {
  classifications?: Classifications;
  /** Response probes: the final readings (body, last stream chunk) or the ones whose label changed (stream). */
  response_classifications?: ResponseClassifications;
  timings?: Timings;
}

export type ChatResponse = Omit<ChatCompletion, "choices"> & {
  choices: Array<Omit<ChatCompletion.Choice, "finish_reason"> & { finish_reason: ChatCompletion.Choice["finish_reason"] }>;
} & OnepassExtensions;
export type ChatChunk = ChatCompletionChunk & OnepassExtensions;
export type CompletionResponse = Completion & OnepassExtensions;

/** OpenAI's moderation result, with categories named after the probes' labels instead of OpenAI's fixed set. */
export type ModerationResult = Pick<Moderation, "flagged"> & {
  categories: Record<string, boolean>;
  category_scores: Record<string, number>;
  classifications: Classifications;
};
export type ModerationResponse = Omit<ModerationCreateResponse, "results"> & { results: ModerationResult[] };

export interface ModerationRequest {
  input: string | string[];
  model?: string;
  onepass?: OnepassRequestOptions;
}

/** POST /v1/classify: one or many texts through every (or the named) probes, prefill only. */
export interface ClassifyRequest {
  input: string | string[];
  model?: string;
  /** How each text becomes a prompt: "chat" (one user message in the chat template) or "raw"; default: the probes' training template. */
  template?: "chat" | "raw";
  probes?: string[];
  layer_weights?: boolean;
}

export interface ClassifyResponse {
  object: "classification.list";
  model: string;
  data: Array<{ index: number; prompt_tokens: number; classifications: Classifications; prefill_ms: number }>;
}

export type ModelObject = Model;
export interface ModelList {
  object: "list";
  data: Model[];
}
