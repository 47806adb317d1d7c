/**
 * Tokenizers from GGUF vocabularies (`tokenizer.ggml.model` "llama" = SentencePiece BPE, "gpt2" = byte-level
 * BPE), encoding through `@huggingface/tokenizers` (see gguf-convert.ts) and decoding byte-exactly the way
 * llama.cpp turns pieces into bytes.
 */
import { Tokenizer as LibraryTokenizer } from "@huggingface/tokenizers";
import { TokenizerError } from "../errors.js";
import { CHAR_TO_BYTE } from "./byte-level.js";
import { CompactBpe } from "./bpe.js";
import { ggufMerges, ggufTokenizerJsonShell, SPM_SPACE } from "./gguf-convert.js";
import { GgufTokenType, ggufVocabFromMetadata, type GgufVocab } from "./gguf-vocab.js";
import { PipelineTokenizer } from "./pipeline.js";
import { SpecialTokenSplitter, type SpecialTokenEntry } from "./special.js";

/** Control-token texts that end a turn in common chat formats (llama.cpp treats them as end-of-generation). */
const END_OF_TURN_TEXTS = new Set([
  "<|eot_id|>",
  "<|eom_id|>",
  "<|im_end|>",
  "<|end|>",
  "<end_of_turn>",
  "<|endoftext|>",
  "<|end_of_text|>",
  "<EOT>",
  "<｜end▁of▁sentence｜>",
]);

const PHI3_NO_RSTRIP = new Set(["<unk>", "<s>", "<|endoftext|>"]);

const UTF8 = new TextEncoder();

/**
 * Builds a tokenizer from already-parsed GGUF metadata: a plain key → value object (as @huggingface/gguf
 * returns it) or a Map of key → value or key → {value} entries (as onepass's own GGUF reader returns it).
 */
export function tokenizerFromGgufMetadata(
  metadata: Record<string, unknown> | ReadonlyMap<string, unknown>,
  source = "<gguf metadata>",
): PipelineTokenizer {
  let plain: Record<string, unknown>;
  if (metadata instanceof Map) {
    plain = {};
    for (const [key, entry] of metadata) {
      const isEntry = entry !== null && typeof entry === "object" && !Array.isArray(entry) && "value" in entry;
      plain[key] = isEntry ? (entry as { value: unknown }).value : entry;
    }
  } else {
    plain = metadata as Record<string, unknown>;
  }
  return tokenizerFromGgufVocab(ggufVocabFromMetadata(plain, source));
}

function looksLikeControl(text: string): boolean {
  return text.length > 2 && ((text.startsWith("<") && text.endsWith(">")) || (text.startsWith("[") && text.endsWith("]")));
}

function isSpecialType(type: number): boolean {
  return type === GgufTokenType.CONTROL || type === GgufTokenType.UNKNOWN;
}

export function tokenizerFromGgufVocab(vocab: GgufVocab): PipelineTokenizer {
  const { tokens, tokenTypes } = vocab;
  const V = tokens.length;
  const tokenToIdMap = new Map<string, number>();
  for (let id = 0; id < V; id++) if (!tokenToIdMap.has(tokens[id])) tokenToIdMap.set(tokens[id], id);
  // the library runs the normalizer and pre-tokenizer; merging is CompactBpe's (same tokens, far less memory)
  let library: LibraryTokenizer;
  let bpe: CompactBpe;
  try {
    library = new LibraryTokenizer(ggufTokenizerJsonShell(vocab), { clean_up_tokenization_spaces: false });
    const model = vocab.model === "llama"
      ? { byteFallback: true, unkId: vocab.unkId !== undefined ? tokenToIdMap.get(tokens[vocab.unkId]) : undefined, fuseUnk: true, ignoreMerges: false }
      : { byteFallback: false, unkId: undefined, fuseUnk: false, ignoreMerges: vocab.pre === "llama-bpe" || vocab.pre === "llama3" };
    bpe = new CompactBpe(tokens, tokenToIdMap, ggufMerges(vocab), model);
  } catch (err) {
    if (err instanceof TokenizerError) throw err;
    throw new TokenizerError(`cannot build the tokenizer: ${(err as Error).message}`, { file: vocab.source, field: "tokenizer.ggml.model" }, { cause: err });
  }

  const specialIds = new Set<number>();
  const entries: SpecialTokenEntry[] = [];
  // llama.cpp keys one quirk on general.name: Phi-3's special tokens swallow the whitespace after them.
  const isPhi3 = vocab.modelName.includes("phi-3") || vocab.modelName.includes("phi3");
  for (let id = 0; id < V; id++) {
    const type = tokenTypes[id];
    if (isSpecialType(type)) specialIds.add(id);
    // Control (and unknown) tokens are recognised only when parsing specials; user-defined ones always,
    // except those that look like control tokens ("</s>" in Phi-3): llama.cpp leaves those to parse_special
    // too (checked against node-llama-cpp in test/tokenizer-llamacpp.test.ts).
    if (isSpecialType(type) || type === GgufTokenType.USER_DEFINED) {
      const rstrip = isPhi3 && !PHI3_NO_RSTRIP.has(tokens[id]);
      const alwaysMatched = type === GgufTokenType.USER_DEFINED && !looksLikeControl(tokens[id]);
      entries.push({ id, text: tokens[id], onlyWhenParsingSpecial: !alwaysMatched, rstrip });
    }
  }

  const eosTokenIds: number[] = [];
  if (vocab.eosId !== undefined) eosTokenIds.push(vocab.eosId);
  for (const id of vocab.extraEogIds) if (!eosTokenIds.includes(id)) eosTokenIds.push(id);
  for (let id = 0; id < V; id++) {
    if (tokenTypes[id] !== GgufTokenType.NORMAL && END_OF_TURN_TEXTS.has(tokens[id]) && !eosTokenIds.includes(id)) eosTokenIds.push(id);
  }

  const pieceBytes = new Array<Uint8Array | undefined>(V); // [V] lazily filled
  // only what decoding reads stays reachable from the tokenizer (not the vocabulary's merges or scores)
  const pieces: PieceSource = { tokens, tokenTypes, model: vocab.model };
  const bytesOf = (id: number): Uint8Array => {
    let bytes = pieceBytes[id];
    if (bytes === undefined) {
      bytes = tokenBytes(pieces, id);
      pieceBytes[id] = bytes;
    }
    return bytes;
  };
  const stripLeadingSpace = vocab.model === "llama" && vocab.addSpacePrefix;
  const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

  const decode = (ids: readonly number[], skipSpecial: boolean): string => {
    const parts: Uint8Array[] = [];
    let total = 0;
    let first = true;
    for (const id of ids) {
      if (skipSpecial && specialIds.has(id)) continue;
      let bytes = bytesOf(id);
      // SentencePiece: the space the encoder prepended is not part of the text.
      if (first && stripLeadingSpace && !specialIds.has(id) && bytes.length > 0 && bytes[0] === 0x20) bytes = bytes.subarray(1);
      first = false;
      parts.push(bytes);
      total += bytes.length;
    }
    const all = new Uint8Array(total); // [bytes]
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return decoder.decode(all);
  };

  const chatTemplate =
    vocab.chatTemplate !== undefined ? { template: vocab.chatTemplate, file: vocab.source, field: "tokenizer.chat_template" } : undefined;
  return new PipelineTokenizer({
    source: vocab.source,
    library,
    model: (words, out) => bpe.encode(words, out),
    splitter: new SpecialTokenSplitter(entries),
    vocabSize: V,
    bosTokenId: vocab.bosId,
    eosTokenIds,
    bosToken: vocab.bosId !== undefined ? tokens[vocab.bosId] : undefined,
    eosToken: vocab.eosId !== undefined ? tokens[vocab.eosId] : undefined,
    defaultPrefixIds: vocab.addBos && vocab.bosId !== undefined ? [vocab.bosId] : [],
    defaultSuffixIds: vocab.addEos && vocab.eosId !== undefined ? [vocab.eosId] : [],
    specialIds,
    idToToken: (id) => (Number.isInteger(id) && id >= 0 && id < V ? tokens[id] : undefined),
    tokenToId: (token) => tokenToIdMap.get(token),
    decode,
    chatTemplate,
  });
}

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

/** What tokenBytes reads of a vocabulary. */
type PieceSource = Pick<GgufVocab, "tokens" | "tokenTypes" | "model">;

/** The bytes one token stands for in generated text (llama.cpp's token_to_piece with special = true). */
function tokenBytes(vocab: PieceSource, id: number): Uint8Array {
  const text = vocab.tokens[id];
  const type = vocab.tokenTypes[id];
  if (type === GgufTokenType.BYTE) {
    const m = BYTE_TOKEN.exec(text);
    if (m !== null) return Uint8Array.of(parseInt(m[1], 16));
  }
  if (isSpecialType(type) || type === GgufTokenType.USER_DEFINED) return UTF8.encode(text);
  if (vocab.model === "llama") return UTF8.encode(text.replaceAll(SPM_SPACE, " "));
  // Byte-level BPE: every character stands for one byte; anything outside the table is kept as UTF-8.
  const out: number[] = [];
  for (const ch of text) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b !== undefined) out.push(b);
    else for (const x of UTF8.encode(ch)) out.push(x);
  }
  return Uint8Array.from(out);
}
