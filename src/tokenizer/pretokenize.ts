/**
 * Pre-tokeniser regexes for byte-level BPE vocabularies, keyed by GGUF `tokenizer.ggml.pre`. Each entry is a
 * list applied in order, every regex splitting the pieces left by the previous one and keeping the text
 * between matches as pieces too (llama.cpp's `unicode_regex_split`, i.e. HF `Split` with behaviour
 * "Isolated"). Patterns are written as in the models' tokenizer.json (Oniguruma syntax); the tokenizer
 * library translates them to JavaScript regexes.
 */
import { TokenizerError } from "../errors.js";

const GPT2 = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;
const LLAMA3 = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const QWEN2 = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

const PRE_TOKENIZER_REGEXES: Record<string, readonly string[]> = {
  // llama.cpp's fallback for BPE vocabularies converted without a recognised pre-tokeniser.
  default: [String.raw`[\p{P}\$\+<=>\^~\|]+`, GPT2, String.raw`\p{N}+`, "[0-9][0-9][0-9]"],
  "gpt-2": [GPT2],
  mpt: [GPT2],
  olmo: [GPT2],
  jais: [GPT2],
  "llama-bpe": [LLAMA3],
  llama3: [LLAMA3],
  dbrx: [LLAMA3],
  "smaug-bpe": [LLAMA3],
  "chatglm-bpe": [LLAMA3],
  qwen2: [QWEN2],
  stablelm2: [QWEN2],
  smollm: [String.raw`\p{N}`, GPT2],
  starcoder: [String.raw`\p{N}`, GPT2],
  refact: [String.raw`\p{N}`, GPT2],
  "command-r": [String.raw`\p{N}`, GPT2],
  codeshell: [String.raw`\p{N}`, GPT2],
  exaone: [String.raw`\p{N}`, GPT2],
  "deepseek-coder": ["[\r\n]", String.raw`\s?\p{L}+`, String.raw`\s?\p{P}+`, "[一-龥ࠀ-一가-퟿]+", String.raw`\p{N}`],
};

/** The regex list for a `tokenizer.ggml.pre` value; an unknown value is an error naming the field. */
export function preTokenizerRegexes(pre: string, source: string): readonly string[] {
  const list = Object.prototype.hasOwnProperty.call(PRE_TOKENIZER_REGEXES, pre) ? PRE_TOKENIZER_REGEXES[pre] : undefined;
  if (list === undefined) {
    throw new TokenizerError(
      `unsupported pre-tokenizer "${pre}" (supported: ${Object.keys(PRE_TOKENIZER_REGEXES).join(", ")})`,
      { file: source, field: "tokenizer.ggml.pre" },
    );
  }
  return list;
}

export const SUPPORTED_PRE_TOKENIZERS: readonly string[] = Object.keys(PRE_TOKENIZER_REGEXES);
