/**
 * Live comparison with llama.cpp (node-llama-cpp 3.21.1, the project's oracle) on text the conformance
 * vectors do not cover: special tokens in the text (parseSpecial on and off), chat-formatted turns,
 * Phi-3's whitespace-swallowing special tokens, and the stories260K model vocabulary.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { getLlama } from "node-llama-cpp";
import { tokenizerFromGguf } from "../src/model/gguf/tokenizer.js";
import { GGUF_VOCABS } from "./helpers.js";

const FILES = GGUF_VOCABS;

const TEXTS = [
  "<|user|>\nHi there</s><|end|>\n<|assistant|>\n",
  "<s>Hello <|end|> world",
  "hi<|endoftext|> there",
  "<|system|>\nYou are helpful.<|end|>\n<|user|>\n  What is 2+2?<|end|>\n<|assistant|>\n",
  "<｜begin▁of▁sentence｜>User: hi\n\nAssistant:",
  " <|im_start|>user\nhey<|im_end|>\n",
  "Once upon a time, there was a little girl named Lily.",
  "\n\n  leading and trailing  \n",
];

test("encode equals llama.cpp on special-token text, with and without parseSpecial", async () => {
  const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never });
  for (const file of FILES) {
    const model = await llama.loadModel({ modelPath: file, vocabOnly: true });
    try {
      const tok = await tokenizerFromGguf(file);
      for (const text of TEXTS) {
        for (const parseSpecial of [true, false]) {
          const expected = Array.from(model.tokenize(text, parseSpecial)).map(Number);
          assert.deepEqual(tok.encode(text, { addBos: false, parseSpecial }), expected, `${file} parseSpecial=${parseSpecial} ${JSON.stringify(text)}`);
        }
      }
    } finally {
      await model.dispose();
    }
  }
});
