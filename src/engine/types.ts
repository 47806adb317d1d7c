import type { HiddenStates } from "../types/hidden.js";
import type { SummaryRequest, TapSummary } from "../types/summary.js";

/**
 * One forward run of the decoder over a chunk of tokens, appended to the session's KV cache.
 * The prompt's hidden states come from the same ORT run() that produces the first logits.
 */
export interface ForwardPass {
  /** [positions, vocab]: logits for the positions asked for (by default only the last one). */
  logits: Float32Array;
  /** How many rows `logits` has. */
  positions: number;
  /** [L+1, T, d] for the tokens of this run, when hidden states were requested. */
  hidden?: HiddenStates;
  /** Per-layer token summaries of this run's tokens (types/summary.ts), when asked (ForwardOptions.summary). */
  summary?: TapSummary;
  /** Wall time of the ORT run, ms. */
  runMs: number;
}

export interface ForwardOptions {
  /** Return the stacked hidden states of this run's tokens (needs a session built with taps). */
  hidden?: boolean;
  /** "last" (default): logits of the last token only; "all": every token of the run. */
  logits?: "last" | "all";
  /**
   * Per-layer token summaries instead of (or besides) the stacked hidden states: computed in the graph, so the
   * [L+1, T, d] tensor is not copied out of ORT (needs a session with hasTapSummaries).
   */
  summary?: SummaryRequest;
}

/** One sequence of a BatchDecoder (an opaque handle; `length` = its cached positions). */
export interface SequenceHandle {
  readonly length: number;
  readonly closed: boolean;
}

/**
 * Several independent sequences over one session (one copy of the weights), each with its own KV cache, that
 * decode together: one ORT run serves one new token of every sequence in a step. Runs never overlap: callers
 * (engine/batch.ts) serialise them.
 */
export interface BatchDecoder {
  openSequence(): SequenceHandle;
  /** Frees the sequence's cache slot; it must not run again. */
  closeSequence(seq: SequenceHandle): void;
  /** Runs tokens of one sequence (its prefill, chunked like DecoderSession.forward), appended to its cache. */
  forwardSequence(seq: SequenceHandle, tokens: readonly number[], options?: ForwardOptions): Promise<ForwardPass>;
  /**
   * One token for each sequence, all in one ORT run (batch = seqs.length). Returns one pass per sequence: logits
   * [1, vocab] and, with `hidden`, that token's hidden states [L+1, 1, d].
   */
  decodeStep(seqs: readonly SequenceHandle[], tokens: readonly number[], options?: { hidden?: boolean }): Promise<ForwardPass[]>;
}

/**
 * A decoder with its KV cache (batch 1). `forward` appends tokens at positions pastLength, pastLength+1, ...
 */
export interface DecoderSession {
  readonly vocabSize: number;
  readonly contextLength: number;
  /** Number of tokens already in the KV cache. */
  readonly pastLength: number;
  /** True when the graph has the stacked hidden-state output. */
  readonly hasTaps: boolean;
  /** True when runs can return per-layer token summaries (ForwardOptions.summary). */
  readonly hasTapSummaries?: boolean;
  forward(tokens: readonly number[], options?: ForwardOptions): Promise<ForwardPass>;
  /** Drop the KV cache (start a new sequence). */
  reset(): void;
  /** Keep only the first n cached positions (for re-use of a shared prefix). */
  truncate(n: number): void;
  /** Batched decoding over the same weights, when the graph supports it (onepass's own graphs). */
  readonly batch?: BatchDecoder;
  dispose(): Promise<void>;
}
