/**
 * CompactBpe (the GGUF tokenizers' merge step) against the BPE model of `@huggingface/tokenizers` built from the
 * same vocabulary and merges: the same token ids for every pre-tokenised word of varied text (ASCII, accents,
 * CJK, emoji, characters outside the vocabulary, long runs), on SentencePiece and byte-level vocabularies.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Tokenizer as LibraryTokenizer } from "@huggingface/tokenizers";
import { readGgufVocab } from "../src/model/gguf/tokenizer.js";
import { Rng } from "../src/numeric/rng.js";
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

test("CompactBpe's merge table: repeated merges take their last rank, parts outside the vocabulary merge on, every pair found among 20k", () => {
  const tokens = ["a", "b", "c", "x", "ab", "bc", "abc", "cab", "xx", "xxxx"];
  // "a b" again after "c a": its last rank wins (in "cab", "c a" merges first); "c a" makes "ca", no token, whose
  // merges still apply; "q r" names no token at all
  const mergeList = ["b c", "a b", "c a", "x x", "ab c", "c ab", "a b", "xx xx", "q r"];
  const library = new LibraryTokenizer({
    version: "1.0", added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null,
    model: { type: "BPE", vocab: Object.fromEntries(tokens.map((t, i) => [t, i])), merges: mergeList, unk_token: null, byte_fallback: false, fuse_unk: false, ignore_merges: false },
  }, { clean_up_tokenization_spaces: false });
  const lib = library.model!;
  const tokenToId = new Map(tokens.map((t, i) => [t, i]));
  const bpe = new CompactBpe(tokens, tokenToId, mergeList.map((m) => m.split(" ") as [string, string]), { byteFallback: false, fuseUnk: false, ignoreMerges: false });
  const rng = new Rng(11);
  for (let n = 0; n < 400; n++) {
    const word = Array.from({ length: 1 + rng.int(9) }, () => "abcx"[rng.int(4)]).join("");
    const expected = (lib([word]) as string[]).map((p) => lib.tokens_to_ids.get(p));
    const got: number[] = [];
    bpe.encode([word], got);
    assert.deepEqual(got, expected, word);
  }
  // a big table (probing past collisions): 20k merges of two-letter tokens, each found with its own result
  const letters = Array.from({ length: 150 }, (_, i) => String.fromCharCode(0x4e00 + i));
  const big = [...letters];
  const pairs: [string, string][] = [];
  for (let i = 0; pairs.length < 20_000; i++) {
    const p: [string, string] = [letters[i % 150], letters[Math.floor(i / 150) % 150]];
    pairs.push(p);
    big.push(p[0] + p[1]);
  }
  const bigBpe = new CompactBpe(big, new Map(big.map((t, i) => [t, i])), pairs, { byteFallback: false, fuseUnk: false, ignoreMerges: false });
  for (let i = 0; i < pairs.length; i += 7) {
    const got: number[] = [];
    bigBpe.encode([pairs[i][0] + pairs[i][1]], got);
    assert.deepEqual(got, [150 + i]);
  }
});
