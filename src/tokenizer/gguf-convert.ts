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
  const { left, right } = spmMergeIds(vocab);
  return Array.from(left, (l, i) => [vocab.tokens[l], vocab.tokens[right[i]]]);
}

/**
 * spmMergesFromScores as token ids: merge r joins left[r] and right[r]. Kept in typed arrays (a 152k-token
 * vocabulary has ~150k merges) so that building a tokenizer does not spike the heap.
 */
export function spmMergeIds(vocab: GgufVocab): { left: Int32Array; right: Int32Array } {
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
  const lefts: number[] = [], rights: number[] = [], owners: number[] = []; // per candidate; owner = id of the merged piece
  for (const [piece, id] of pieceIds) {
    // every split between two code points (a surrogate pair is one character)
    for (let k = 1; k < piece.length; k++) {
      const c = piece.charCodeAt(k);
      if (c >= 0xdc00 && c <= 0xdfff) continue;
      const l = pieceIds.get(piece.slice(0, k));
      if (l === undefined) continue;
      const r = pieceIds.get(piece.slice(k));
      if (r === undefined) continue;
      lefts.push(l);
      rights.push(r);
      owners.push(id);
    }
  }
  const n = lefts.length;
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => scores[owners[b]] - scores[owners[a]] || owners[a] - owners[b]);
  return { left: Int32Array.from(order, (i) => lefts[i]), right: Int32Array.from(order, (i) => rights[i]) };
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
  const json = ggufTokenizerJsonShell(vocab);
  const model = json.model as Json;
  model.vocab = vocabObject(vocab.tokens);
  model.merges = [...ggufMerges(vocab)];
  return json;
}

/** The merges of a GGUF vocabulary in rank order (SentencePiece: derived from the scores). */
export function ggufMerges(vocab: GgufVocab): Iterable<[string, string]> {
  if (vocab.model === "llama") {
    const { left, right } = spmMergeIds(vocab);
    return (function* () {
      for (let i = 0; i < left.length; i++) yield [vocab.tokens[left[i]], vocab.tokens[right[i]]] as [string, string];
    })();
  }
  const stored = vocab.merges ?? [];
  return (function* () {
    for (let i = 0; i < stored.length; i++) yield splitMerge(stored[i], i, vocab.source);
  })();
}

/**
 * The tokenizer.json object of a GGUF vocabulary with an empty BPE model (vocab {}, merges []): its
 * normalizer, pre-tokenizer and decoder, and the model's settings. ggufVocabToTokenizerJson fills the model in.
 */
export function ggufTokenizerJsonShell(vocab: GgufVocab): Json {
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
        vocab: {},
        merges: [],
        unk_token: vocab.unkId !== undefined ? vocab.tokens[vocab.unkId] : null,
        byte_fallback: true,
        fuse_unk: true,
      },
    };
  }
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
      vocab: {},
      merges: [],
      unk_token: null,
      byte_fallback: false,
      // Llama 3 style vocabularies take a whole pre-token that is itself a token without merging.
      ignore_merges: vocab.pre === "llama-bpe" || vocab.pre === "llama3",
    },
  };
}
