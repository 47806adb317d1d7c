/**
 * The tokenizer part of a GGUF file's metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`), read and
 * checked once so that the converters below can trust it.
 */
import { TokenizerError } from "../errors.js";

/** llama.cpp's `llama_token_type` values as stored in `tokenizer.ggml.token_type`. */
export const GgufTokenType = {
  UNDEFINED: 0,
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

export type GgufTokenizerModel = "llama" | "gpt2";

export interface GgufVocab {
  /** Where the metadata came from (file path or a caller-given name), for error messages. */
  source: string;
  model: GgufTokenizerModel;
  /** `tokenizer.ggml.pre`; "default" when absent. */
  pre: string;
  tokens: string[]; // [V]
  /** SentencePiece scores (llama model only). */
  scores?: number[]; // [V]
  tokenTypes: number[]; // [V]
  /** BPE merges as stored: "left right" (gpt2 model only). */
  merges?: string[]; // [M]
  bosId?: number;
  eosId?: number;
  /** End-of-generation tokens besides EOS (`eot_token_id`, `eom_token_id`). */
  extraEogIds: number[];
  unkId?: number;
  addBos: boolean;
  addEos: boolean;
  addSpacePrefix: boolean;
  /** `general.name`, lower-cased ("" when absent); llama.cpp keys a few tokenizer quirks on it. */
  modelName: string;
  chatTemplate?: string;
}

const KNOWN_MODELS: readonly string[] = ["llama", "gpt2"];
/** A GGUF optional token id of 0xFFFFFFFF (or -1) means "none". */
const NO_TOKEN = 4294967295;

function stringArray(metadata: Record<string, unknown>, field: string, source: string, required: true): string[];
function stringArray(metadata: Record<string, unknown>, field: string, source: string, required: false): string[] | undefined;
function stringArray(metadata: Record<string, unknown>, field: string, source: string, required: boolean): string[] | undefined {
  const value = metadata[field];
  if (value === undefined) {
    if (required) throw new TokenizerError("missing (needed to build the tokenizer)", { file: source, field });
    return undefined;
  }
  if (!Array.isArray(value)) throw new TokenizerError("expected an array of strings", { file: source, field });
  for (let i = 0; i < value.length; i++) {
    if (typeof value[i] !== "string") {
      throw new TokenizerError(`element ${i} is ${typeof value[i]}, expected a string`, { file: source, field });
    }
  }
  return value as string[];
}

function numberArray(metadata: Record<string, unknown>, field: string, source: string, length: number): number[] | undefined {
  const value = metadata[field];
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length !== length) {
    throw new TokenizerError(`expected an array of ${length} numbers`, { file: source, field });
  }
  for (let i = 0; i < value.length; i++) {
    if (typeof value[i] !== "number" || Number.isNaN(value[i])) {
      throw new TokenizerError(`element ${i} is not a number`, { file: source, field });
    }
  }
  return value as number[];
}

function optionalTokenId(metadata: Record<string, unknown>, field: string, source: string, vocabSize: number, fallback?: number): number | undefined {
  const raw = metadata[field];
  if (raw === undefined) return fallback;
  const value = typeof raw === "bigint" ? Number(raw) : raw;
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TokenizerError(`expected a token id, got ${String(raw)}`, { file: source, field });
  }
  if (value === NO_TOKEN || value === -1) return undefined;
  if (value < 0 || value >= vocabSize) {
    throw new TokenizerError(`token id ${value} is outside the vocabulary (size ${vocabSize})`, { file: source, field });
  }
  return value;
}

function optionalBool(metadata: Record<string, unknown>, field: string, source: string, fallback: boolean): boolean {
  const value = metadata[field];
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") throw new TokenizerError(`expected a boolean, got ${String(value)}`, { file: source, field });
  return value;
}

/** Checks and extracts the tokenizer from already-parsed GGUF metadata (e.g. from the model loader). */
export function ggufVocabFromMetadata(metadata: Record<string, unknown>, source: string): GgufVocab {
  const modelRaw = metadata["tokenizer.ggml.model"];
  if (modelRaw === undefined) {
    throw new TokenizerError("missing: the file has no tokenizer", { file: source, field: "tokenizer.ggml.model" });
  }
  if (typeof modelRaw !== "string" || !KNOWN_MODELS.includes(modelRaw)) {
    throw new TokenizerError(`unsupported tokenizer model "${String(modelRaw)}" (supported: ${KNOWN_MODELS.join(", ")})`, {
      file: source,
      field: "tokenizer.ggml.model",
    });
  }
  const model = modelRaw as GgufTokenizerModel;
  const preRaw = metadata["tokenizer.ggml.pre"];
  if (preRaw !== undefined && typeof preRaw !== "string") {
    throw new TokenizerError("expected a string", { file: source, field: "tokenizer.ggml.pre" });
  }
  const tokens = stringArray(metadata, "tokenizer.ggml.tokens", source, true);
  const V = tokens.length;
  if (V === 0) throw new TokenizerError("empty vocabulary", { file: source, field: "tokenizer.ggml.tokens" });
  const tokenTypes = numberArray(metadata, "tokenizer.ggml.token_type", source, V) ?? new Array<number>(V).fill(GgufTokenType.NORMAL);
  const scores = numberArray(metadata, "tokenizer.ggml.scores", source, V);
  const merges = stringArray(metadata, "tokenizer.ggml.merges", source, false);
  if (model === "gpt2" && merges === undefined) {
    throw new TokenizerError("missing (a gpt2 tokenizer needs its merges)", { file: source, field: "tokenizer.ggml.merges" });
  }
  const isSpm = model === "llama";
  const bosId = optionalTokenId(metadata, "tokenizer.ggml.bos_token_id", source, V, isSpm ? 1 : undefined);
  const eosId = optionalTokenId(metadata, "tokenizer.ggml.eos_token_id", source, V, isSpm ? 2 : undefined);
  const unkId = optionalTokenId(metadata, "tokenizer.ggml.unknown_token_id", source, V, isSpm ? 0 : undefined);
  const extraEogIds: number[] = [];
  for (const field of ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]) {
    const id = optionalTokenId(metadata, field, source, V);
    if (id !== undefined && id !== eosId && !extraEogIds.includes(id)) extraEogIds.push(id);
  }
  const pre = preRaw ?? "default";
  // llama.cpp's defaults: SPM adds BOS; among BPE vocabularies only Llama 3 ("llama-bpe") does.
  const addBos = optionalBool(metadata, "tokenizer.ggml.add_bos_token", source, isSpm || pre === "llama-bpe");
  const addEos = optionalBool(metadata, "tokenizer.ggml.add_eos_token", source, false);
  const addSpacePrefix = optionalBool(metadata, "tokenizer.ggml.add_space_prefix", source, isSpm);
  const chat = metadata["tokenizer.chat_template"];
  if (chat !== undefined && typeof chat !== "string") {
    throw new TokenizerError("expected a string", { file: source, field: "tokenizer.chat_template" });
  }
  const name = metadata["general.name"];
  return {
    source,
    model,
    pre,
    tokens,
    scores,
    tokenTypes,
    merges,
    bosId,
    eosId,
    extraEogIds,
    unkId,
    addBos,
    addEos,
    addSpacePrefix,
    modelName: typeof name === "string" ? name.toLowerCase() : "",
    chatTemplate: chat,
  };
}
