/**
 * CompactBpe (the GGUF tokenizers' merge step) against the BPE model of `@huggingface/tokenizers` built from the
 * same vocabulary and merges: the same token ids for every pre-tokenised word of varied text (ASCII, accents,
 * CJK, emoji, characters outside the vocabulary, long runs), on SentencePiece and byte-level vocabularies.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Tokenizer as LibraryTokenizer } from "@huggingface/tokenizers";
import { readGgufVocab } from "../src/model/gguf/tokenizer.js";
import { CompactBpe } from "../src/tokenizer/bpe.js";
import { ggufMerges, ggufVocabToTokenizerJson } from "../src/tokenizer/gguf-convert.js";
import { GGUF_VOCABS } from "./helpers.js";

const FILES = GGUF_VOCABS;

const PIECES = ["the", " quick", "brown", "fox", "über", "naïve", "日本語", "中文", "🦙", "👩‍💻", "\u{10FFFF}", "𝔘", "aaaa", "   ", "\n\n", "12345", "don't", "Ω≈ç", "ﬁ", "\t", "x".repeat(40)];

/** Deterministic pseudo-random texts built from PIECES. */
function texts(n: number): string[] {
  let s = 7;
  const rnd = (k: number) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % k;
  };
  return Array.from({ length: n }, () => Array.from({ length: 1 + rnd(12) }, () => PIECES[rnd(PIECES.length)] + (rnd(3) === 0 ? " " : "")).join(""));
}

test("CompactBpe gives the library BPE's ids for every word, on SentencePiece and byte-level vocabularies", () => {
  for (const file of FILES) {
    const vocab = readGgufVocab(file);
    const library = new LibraryTokenizer(ggufVocabToTokenizerJson(vocab), { clean_up_tokenization_spaces: false });
    const lib = library.model!;
    const tokenToId = new Map<string, number>();
    vocab.tokens.forEach((t, id) => {
      if (!tokenToId.has(t)) tokenToId.set(t, id);
    });
    const spm = vocab.model === "llama";
    const unkId = spm && vocab.unkId !== undefined ? tokenToId.get(vocab.tokens[vocab.unkId]) : undefined;
    const bpe = new CompactBpe(vocab.tokens, tokenToId, ggufMerges(vocab), {
      byteFallback: spm,
      unkId,
      fuseUnk: spm,
      ignoreMerges: vocab.pre === "llama-bpe" || vocab.pre === "llama3",
    });
    let words = 0;
    for (const text of texts(150)) {
      const normalized = library.normalizer !== null ? library.normalizer(text) : text;
      const pieces: string[] = library.pre_tokenizer !== null ? library.pre_tokenizer(normalized) : [normalized];
      const expected = (lib(pieces) as string[]).map((p) => lib.tokens_to_ids.get(p) ?? lib.unk_token_id);
      const got: number[] = [];
      bpe.encode(pieces, got);
      assert.deepEqual(got, expected, `${file}: ${JSON.stringify(text)}`);
      // a second call takes the cached words and must agree too
      const again: number[] = [];
      bpe.encode(pieces, again);
      assert.deepEqual(again, expected);
      words += pieces.length;
    }
    assert.ok(words > 300, `${file}: only ${words} words compared`);
  }
});
