import type { HiddenStates } from "../types/hidden.js";

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
  /** Wall time of the ORT run, ms. */
  runMs: number;
}

export interface ForwardOptions {
  /** Return the stacked hidden states of this run's tokens (needs a session built with taps). */
  hidden?: boolean;
  /** "last" (default): logits of the last token only; "all": every token of the run. */
  logits?: "last" | "all";
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
  forward(tokens: readonly number[], options?: ForwardOptions): Promise<ForwardPass>;
  /** Drop the KV cache (start a new sequence). */
  reset(): void;
  /** Keep only the first n cached positions (for re-use of a shared prefix). */
  truncate(n: number): void;
  dispose(): Promise<void>;
}
