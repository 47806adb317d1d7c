/**
 * Incremental detokenization for streaming generation. Each push decodes a short window of recent tokens
 * twice (without and with the new token) and returns the difference, so that SentencePiece's leading-space
 * rule and multi-byte UTF-8 characters split over byte tokens come out exactly as a full decode would:
 * text ending in an incomplete character (U+FFFD) is held back until the next token completes it.
 */
import type { Tokenizer } from "./types.js";

export interface TextStreamer {
  /** Adds one generated token; returns the text it completed ("" when it completed none yet). */
  push(id: number): string;
  /** Returns whatever is still held back (an incomplete character decodes as U+FFFD) and resets the hold. */
  flush(): string;
  /** All text returned so far. */
  readonly text: string;
}

export interface TextStreamerOptions {
  /** Drop control tokens (default true, as in Tokenizer.decode). */
  skipSpecial?: boolean;
  /**
   * Tokens that precede the streamed ones (e.g. the end of the prompt). They are never returned, but they
   * give the first streamed token its context, so "▁Once" streams as " Once" rather than "Once".
   */
  contextIds?: readonly number[];
}

export function createTextStreamer(tokenizer: Tokenizer, options: TextStreamerOptions = {}): TextStreamer {
  const skipSpecial = options.skipSpecial ?? true;
  const ids: number[] = [...(options.contextIds ?? [])]; // [T] context + streamed tokens
  let prefixOffset = 0; // start of the decode window
  let readOffset = ids.length; // tokens before this have been returned as text
  let emitted = "";
  const decode = (from: number, to: number): string => tokenizer.decode(ids.slice(from, to), { skipSpecial });

  const advance = (force: boolean): string => {
    const prefixText = decode(prefixOffset, readOffset);
    const newText = decode(prefixOffset, ids.length);
    if (newText.length > prefixText.length && (force || !newText.endsWith("\uFFFD"))) {
      const delta = newText.slice(prefixText.length);
      prefixOffset = readOffset;
      readOffset = ids.length;
      emitted += delta;
      return delta;
    }
    if (force) {
      prefixOffset = readOffset = ids.length;
    }
    return "";
  };

  return {
    push(id: number): string {
      ids.push(id);
      return advance(false);
    },
    flush(): string {
      return readOffset < ids.length ? advance(true) : "";
    },
    get text(): string {
      return emitted;
    },
  };
}
