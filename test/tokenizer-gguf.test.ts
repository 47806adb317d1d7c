/**
 * GGUF tokenizers against llama.cpp's own conformance vectors (test/fixtures/ggml-vocab/*.inp/.out, no BOS),
 * stories260K ids verified with llama.cpp, byte-fallback decoding and typed errors.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { gguf } from "@huggingface/gguf";
import { tokenizerFromGgufMetadata } from "../src/tokenizer/index.js";
import { tokenizerFromGguf } from "../src/model/gguf/tokenizer.js";
import { TokenizerError } from "../src/errors.js";

const VOCAB_DIR = "test/fixtures/ggml-vocab";

/** llama.cpp's format: inputs separated by "\n__ggml_vocab_test__\n"; line i of .out = ids of input i. */
function readVectors(name: string): { input: string; ids: number[] }[] {
  const inputs = readFileSync(`${VOCAB_DIR}/ggml-vocab-${name}.gguf.inp`, "utf8").split("\n__ggml_vocab_test__\n");
  const lines = readFileSync(`${VOCAB_DIR}/ggml-vocab-${name}.gguf.out`, "utf8").split("\n");
  assert.equal(inputs.at(-1), "", "the .inp file ends with a separator");
  inputs.pop();
  assert.ok(lines.length >= inputs.length);
  return inputs.map((input, i) => ({ input, ids: lines[i].trim() === "" ? [] : lines[i].trim().split(" ").map(Number) }));
}

for (const name of ["llama-spm", "phi-3", "gpt-2", "deepseek-coder"]) {
  test(`GGUF ${name}: every llama.cpp vector encodes exactly, and decodes back`, async () => {
    const tok = await tokenizerFromGguf(`${VOCAB_DIR}/ggml-vocab-${name}.gguf`);
    const vectors = readVectors(name);
    assert.equal(vectors.length, 46);
    for (const [i, v] of vectors.entries()) {
      const ids = tok.encode(v.input, { addBos: false, parseSpecial: false });
      assert.deepEqual(ids, v.ids, `case ${i}: ${JSON.stringify(v.input)}`);
      // All these inputs are plain text without control tokens, so the text comes back unchanged.
      assert.equal(tok.decode(ids), v.input, `round trip of case ${i}`);
    }
  });
}

test("stories260K: 'Once upon a time' → [1, 403, 407, 261, 378] (llama.cpp)", async () => {
  const tok = await tokenizerFromGguf("assets/stories260K.gguf");
  assert.equal(tok.vocabSize, 512);
  assert.equal(tok.addBosByDefault, true);
  assert.deepEqual(tok.encode("Once upon a time"), [1, 403, 407, 261, 378]);
  assert.deepEqual(tok.encode("Once upon a time", { addBos: false }), [403, 407, 261, 378]);
  assert.equal(tok.decode([1, 403, 407, 261, 378]), "Once upon a time");
  // As llama.cpp's detokenizer (and HF's legacy Llama decoder): the space prefix stays after a shown BOS.
  assert.equal(tok.decode([1, 403, 407, 261, 378], { skipSpecial: false }), "<s> Once upon a time");
  assert.deepEqual(tok.eosTokenIds, [2]);
  assert.equal(tok.bosToken, "<s>");
  assert.equal(tok.eosToken, "</s>");
  assert.equal(tok.idToToken(403), "▁Once");
  assert.equal(tok.tokenToId("▁Once"), 403);
  assert.equal(tok.isSpecial(1), true);
  assert.equal(tok.isSpecial(403), false);
});

test("SPM byte fallback: characters outside the vocabulary become <0xNN> tokens and decode back", async () => {
  const tok = await tokenizerFromGguf("assets/stories260K.gguf");
  const text = "Zoë 猫 🙂";
  const ids = tok.encode(text, { addBos: false });
  // 猫 is E7 8C AB in UTF-8: three byte tokens (ids 3 + byte value) must appear in a row.
  const cat = [0xe7, 0x8c, 0xab].map((b) => 3 + b);
  const at = ids.indexOf(cat[0]);
  assert.ok(at >= 0, "byte tokens present");
  assert.deepEqual(ids.slice(at, at + 3), cat);
  assert.equal(tok.idToToken(cat[0]), "<0xE7>");
  assert.equal(tok.decode(ids), text);
});

test("decode: an incomplete UTF-8 sequence becomes U+FFFD, never a crash", async () => {
  const tok = await tokenizerFromGguf("assets/stories260K.gguf");
  // <0xE7> <0x8C> alone (first two bytes of 猫), then a lone continuation byte <0xAB>.
  assert.equal(tok.decode([3 + 0xe7, 3 + 0x8c]), "\uFFFD");
  assert.equal(tok.decode([403, 3 + 0xab]), "Once\uFFFD");
  assert.equal(tok.decode([]), "");
  assert.throws(() => tok.decode([512]), (e: Error) => e.name === "InvalidArgumentError" && /outside the vocabulary/.test(e.message));
});

test("byte-level BPE decode maps bytes back exactly (GPT-2 vocab, emoji split over tokens)", async () => {
  const tok = await tokenizerFromGguf(`${VOCAB_DIR}/ggml-vocab-gpt-2.gguf`);
  const text = "naïve café — 日本語 🦙\n\tend";
  const ids = tok.encode(text);
  assert.equal(tok.addBosByDefault, false);
  assert.equal(tok.decode(ids), text);
  assert.deepEqual(tok.eosTokenIds, [50256]);
});

test("special tokens: parsed as single ids only with parseSpecial, skipped on decode unless asked", async () => {
  const tok = await tokenizerFromGguf(`${VOCAB_DIR}/ggml-vocab-gpt-2.gguf`);
  const withSpecial = tok.encode("hi<|endoftext|> there");
  assert.ok(withSpecial.includes(50256));
  assert.ok(!tok.encode("hi<|endoftext|> there", { parseSpecial: false }).includes(50256));
  assert.equal(tok.decode(withSpecial), "hi there");
  assert.equal(tok.decode(withSpecial, { skipSpecial: false }), "hi<|endoftext|> there");
  assert.equal(tok.decode(tok.encode("hi<|endoftext|> there", { parseSpecial: false })), "hi<|endoftext|> there");
});

test("phi-3: end-of-turn tokens are end-of-generation ids, the chat template is exposed with its source", async () => {
  const path = `${VOCAB_DIR}/ggml-vocab-phi-3.gguf`;
  const tok = await tokenizerFromGguf(path);
  assert.deepEqual(tok.eosTokenIds, [32000, 32007]); // <|endoftext|>, <|end|>
  assert.equal(tok.chatTemplate?.file, path);
  assert.equal(tok.chatTemplate?.field, "tokenizer.chat_template");
  assert.match(tok.chatTemplate?.template ?? "", /<\|assistant\|>/);
});

test("metadata entry point: a plain object and a Map of {value} entries give the same tokenizer", async () => {
  const { metadata } = (await gguf("assets/stories260K.gguf", { allowLocalFile: true })) as unknown as { metadata: Record<string, unknown> };
  const fromObject = tokenizerFromGgufMetadata(metadata, "stories");
  const asEntries = new Map(Object.entries(metadata).map(([k, v]) => [k, { type: 0, value: v, offset: 0 }]));
  const fromMap = tokenizerFromGgufMetadata(asEntries, "stories");
  assert.deepEqual(fromMap.encode("Once upon a time"), fromObject.encode("Once upon a time"));
  assert.deepEqual(fromObject.encode("Once upon a time"), [1, 403, 407, 261, 378]);
});

test("bad metadata → TokenizerError naming the file and field", async () => {
  const { metadata } = (await gguf(`${VOCAB_DIR}/ggml-vocab-gpt-2.gguf`, { allowLocalFile: true })) as unknown as {
    metadata: Record<string, unknown>;
  };
  const check = (patch: Record<string, unknown>, field: string): void => {
    assert.throws(
      () => tokenizerFromGgufMetadata({ ...metadata, ...patch }, "vocab.gguf"),
      (e: unknown) => e instanceof TokenizerError && e.file === "vocab.gguf" && e.field === field && e.message.includes(field),
    );
  };
  check({ "tokenizer.ggml.pre": "no-such-pre" }, "tokenizer.ggml.pre");
  check({ "tokenizer.ggml.model": "rwkv" }, "tokenizer.ggml.model");
  check({ "tokenizer.ggml.merges": undefined }, "tokenizer.ggml.merges");
  check({ "tokenizer.ggml.merges": ["nospace"] }, "tokenizer.ggml.merges");
  check({ "tokenizer.ggml.token_type": [1, 2] }, "tokenizer.ggml.token_type");
  check({ "tokenizer.ggml.eos_token_id": 999999 }, "tokenizer.ggml.eos_token_id");
  check({ "tokenizer.ggml.tokens": [1, 2, 3] }, "tokenizer.ggml.tokens");
  await assert.rejects(tokenizerFromGguf("test/fixtures/no-such.gguf"), (e: unknown) => e instanceof TokenizerError && e.file === "test/fixtures/no-such.gguf");
});
