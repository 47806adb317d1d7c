/** Streaming decode: concatenated pushes equal the full decode, with characters split over byte tokens. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createTextStreamer, tokenizerFromHfFolder, type Tokenizer } from "../src/tokenizer/index.js";
import { tokenizerFromGguf } from "../src/model/gguf/tokenizer.js";

const TEXTS = [
  "Once upon a time 🦙🦙 there was 猫 and 日本語.\nNew line\n\n  indented 👩‍👩‍👧 end",
  " leading space, emoji at end 🙂",
  "ÆØÅ — “quotes” …\t\ttabs",
];

function streamAll(tok: Tokenizer, ids: number[], contextIds?: number[]): { chunks: string[]; flushed: string } {
  const streamer = createTextStreamer(tok, { contextIds });
  const chunks = ids.map((id) => streamer.push(id));
  const flushed = streamer.flush();
  assert.equal(streamer.text, chunks.join("") + flushed);
  return { chunks, flushed };
}

for (const [name, load] of [
  ["stories260K (SPM, byte fallback)", () => tokenizerFromGguf("assets/stories260K.gguf")],
  ["GPT-2 GGUF (byte-level BPE)", () => tokenizerFromGguf("test/fixtures/ggml-vocab/ggml-vocab-gpt-2.gguf")],
  ["GPT-2 tokenizer.json", () => tokenizerFromHfFolder("test/fixtures/hf-tokenizers/gpt2")],
] as const) {
  test(`streamer (${name}): pushes concatenate to decode(all); no chunk holds a broken character`, async () => {
    const tok = await load();
    for (const text of TEXTS) {
      const ids = tok.encode(text, { addBos: false });
      assert.equal(tok.decode(ids), text);
      const { chunks, flushed } = streamAll(tok, ids);
      assert.equal(chunks.join("") + flushed, tok.decode(ids));
      assert.equal(flushed, "");
      for (const c of chunks) assert.ok(!c.includes("\uFFFD"), `chunk ${JSON.stringify(c)}`);
      // Streaming a continuation after context: the text equals decode(context + new) minus decode(context).
      const cut = Math.floor(ids.length / 2);
      const cont = streamAll(tok, ids.slice(cut), ids.slice(0, cut));
      assert.equal(tok.decode(ids.slice(0, cut)) + cont.chunks.join("") + cont.flushed, tok.decode(ids));
    }
  });
}

test("streamer: a multi-byte character split over byte tokens is held until complete; flush returns U+FFFD for a dangling one", async () => {
  const tok = await tokenizerFromGguf("assets/stories260K.gguf");
  const cat = [0xe7, 0x8c, 0xab].map((b) => 3 + b); // 猫 as three byte tokens
  const streamer = createTextStreamer(tok);
  assert.equal(streamer.push(403), "Once");
  assert.equal(streamer.push(cat[0]), "");
  assert.equal(streamer.push(cat[1]), "");
  assert.equal(streamer.push(cat[2]), "猫");
  assert.equal(streamer.push(cat[0]), "");
  assert.equal(streamer.flush(), "\uFFFD");
  assert.equal(streamer.text, "Once猫\uFFFD");
  // SentencePiece leading space: with context, the first streamed word keeps its space.
  const withContext = createTextStreamer(tok, { contextIds: [1, 403] });
  assert.equal(withContext.push(407), " upon");
});
