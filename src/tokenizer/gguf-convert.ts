/**
 * Converts a GGUF vocabulary into a Hugging Face tokenizer.json object, so that the maintained
 * `@huggingface/tokenizers` library does the merging:
 * - SentencePiece ("llama"): a BPE model with byte fallback whose merges are derived from the piece scores
 *   (the way HF's LlamaConverter does it): every split of a piece into two pieces is a merge, ranked by the
 *   merged piece's score. Greedy "best-score pair first" BPE over those ranks is exactly SentencePiece's BPE.
 *   Spaces become "▁" and one "▁" is prepended (add_space_prefix) by normalizers.
 * - byte-level BPE ("gpt2"): the stored merges, a Split pre-tokeniser per regex of `tokenizer.ggml.pre`, and
 *   the GPT-2 byte-to-unicode mapping (ByteLevel without its own regex).
 * Special/control tokens are not added here: the caller splits them out of the text itself, so that
 * `parseSpecial: false` can be honoured.
 */
import { GgufTokenType, type GgufVocab } from "./gguf-vocab.js";
import { preTokenizerRegexes } from "./pretokenize.js";
import { TokenizerError } from "../errors.js";

export const SPM_SPACE = "\u2581";

type Json = Record<string, unknown>;

/** token text → id; on duplicate texts the first id wins. */
function vocabObject(tokens: readonly string[]): Json {
  const vocab: Json = Object.create(null) as Json;
  for (let id = 0; id < tokens.length; id++) {
    if (!(tokens[id] in vocab)) vocab[tokens[id]] = id;
  }
  return vocab;
}

/** Merges for a SentencePiece vocabulary, best merged-piece score first (ties: lower id first). */
export function spmMergesFromScores(vocab: GgufVocab): [string, string][] {
  const { tokens, tokenTypes } = vocab;
  const scores = vocab.scores;
  if (scores === undefined) {
    throw new TokenizerError("missing (a SentencePiece vocabulary needs its scores)", {
      file: vocab.source,
      field: "tokenizer.ggml.scores",
    });
  }
  const pieceIds = new Map<string, number>(); // merge candidates: every non-byte piece
  for (let id = 0; id < tokens.length; id++) {
    if (tokenTypes[id] !== GgufTokenType.BYTE && !pieceIds.has(tokens[id])) pieceIds.set(tokens[id], id);
  }
  const candidates: { left: string; right: string; score: number; id: number }[] = [];
  for (const [piece, id] of pieceIds) {
    const chars = Array.from(piece);
    if (chars.length < 2) continue;
    let left = "";
    for (let k = 1; k < chars.length; k++) {
      left += chars[k - 1];
      const right = piece.slice(left.length);
      if (pieceIds.has(left) && pieceIds.has(right)) candidates.push({ left, right, score: scores[id], id });
    }
  }
  candidates.sort((a, b) => b.score - a.score || a.id - b.id);
  return candidates.map((c) => [c.left, c.right]);
}

/**
 * SentencePiece merges the whole text as one sequence, which is slow on long inputs. When no piece has "▁"
 * right after another character, no merge can ever join a character to a following "▁", so cutting the text
 * before each such "▁" gives the same tokens, and lets the library cache repeated words.
 */
function spmWordSplitIsExact(vocab: GgufVocab): boolean {
  const inner = new RegExp(`[^${SPM_SPACE}]${SPM_SPACE}`, "u");
  for (let id = 0; id < vocab.tokens.length; id++) {
    if (vocab.tokenTypes[id] !== GgufTokenType.BYTE && inner.test(vocab.tokens[id])) return false;
  }
  return true;
}

/** Splits a stored GGUF merge "a b" at the first space after position 0 (as llama.cpp does). */
function splitMerge(merge: string, index: number, source: string): [string, string] {
  const pos = merge.indexOf(" ", 1);
  if (pos < 0) {
    throw new TokenizerError(`merge ${index} "${merge}" has no separating space`, { file: source, field: "tokenizer.ggml.merges" });
  }
  return [merge.slice(0, pos), merge.slice(pos + 1)];
}

/** The tokenizer.json object for a GGUF vocabulary (no added tokens, no post-processor: see module doc). */
export function ggufVocabToTokenizerJson(vocab: GgufVocab): Json {
  if (vocab.model === "llama") {
    const normalizers: Json[] = [];
    if (vocab.addSpacePrefix) normalizers.push({ type: "Prepend", prepend: SPM_SPACE });
    normalizers.push({ type: "Replace", pattern: { String: " " }, content: SPM_SPACE });
    return {
      version: "1.0",
      added_tokens: [],
      normalizer: { type: "Sequence", normalizers },
      pre_tokenizer: spmWordSplitIsExact(vocab)
        ? { type: "Split", pattern: { Regex: `${SPM_SPACE}*[^${SPM_SPACE}]+|${SPM_SPACE}+` }, behavior: "Isolated", invert: false }
        : null,
      post_processor: null,
      decoder: {
        type: "Sequence",
        decoders: [
          { type: "Replace", pattern: { String: SPM_SPACE }, content: " " },
          { type: "ByteFallback" },
          { type: "Fuse" },
        ],
      },
      model: {
        type: "BPE",
        vocab: vocabObject(vocab.tokens),
        merges: spmMergesFromScores(vocab),
        unk_token: vocab.unkId !== undefined ? vocab.tokens[vocab.unkId] : null,
        byte_fallback: true,
        fuse_unk: true,
      },
    };
  }
  const merges = (vocab.merges ?? []).map((m, i) => splitMerge(m, i, vocab.source));
  const splits: Json[] = preTokenizerRegexes(vocab.pre, vocab.source).map((regex) => ({
    type: "Split",
    pattern: { Regex: regex },
    behavior: "Isolated",
    invert: false,
  }));
  return {
    version: "1.0",
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [...splits, { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false }],
    },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: "BPE",
      vocab: vocabObject(vocab.tokens),
      merges,
      unk_token: null,
      byte_fallback: false,
      // Llama 3 style vocabularies take a whole pre-token that is itself a token without merging.
      ignore_merges: vocab.pre === "llama-bpe" || vocab.pre === "llama3",
    },
  };
}
