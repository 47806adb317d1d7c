/** tokenizer.json folders: llama.cpp's GPT-2 vectors through the HF file, config handling, typed errors. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderChatTemplate, tokenizerFromHfFolder } from "../src/tokenizer/index.js";
import { tokenizerFromGguf } from "../src/model/gguf/tokenizer.js";
import { ChatTemplateError, TokenizerError } from "../src/errors.js";
import { tempDir } from "./helpers.js";

const GPT2_DIR = "test/fixtures/hf-tokenizers/gpt2";

test("tokenizer.json (GPT-2) passes llama.cpp's gpt-2 vectors and agrees with the GGUF vocabulary", async () => {
  const tok = await tokenizerFromHfFolder(GPT2_DIR);
  const gguf = await tokenizerFromGguf("test/fixtures/ggml-vocab/ggml-vocab-gpt-2.gguf");
  const inputs = readFileSync("test/fixtures/ggml-vocab/ggml-vocab-gpt-2.gguf.inp", "utf8").split("\n__ggml_vocab_test__\n").slice(0, -1);
  const lines = readFileSync("test/fixtures/ggml-vocab/ggml-vocab-gpt-2.gguf.out", "utf8").split("\n");
  assert.equal(inputs.length, 46);
  for (const [i, input] of inputs.entries()) {
    const expected = lines[i].trim() === "" ? [] : lines[i].trim().split(" ").map(Number);
    const ids = tok.encode(input, { parseSpecial: false });
    assert.deepEqual(ids, expected, `case ${i}: ${JSON.stringify(input)}`);
    assert.equal(tok.decode(ids), input, `round trip of case ${i}`);
    assert.equal(gguf.decode(ids), tok.decode(ids));
  }
  assert.equal(tok.vocabSize, 50257);
  assert.equal(tok.addBosByDefault, false);
  assert.deepEqual(tok.eosTokenIds, [50256]);
  assert.equal(tok.isSpecial(50256), true);
  assert.deepEqual(tok.encode("a<|endoftext|>"), [64, 50256]);
  assert.equal(tok.decode([64, 50256]), "a");
  assert.equal(tok.decode([64, 50256], { skipSpecial: false }), "a<|endoftext|>");
});

test("tokenizer_config.json supplies BOS/EOS names, add_bos and a chat template named by file and field", async () => {
  const dir = tempDir("hf");
  try {
    copyFileSync(join(GPT2_DIR, "tokenizer.json"), join(dir, "tokenizer.json"));
    const configPath = join(dir, "tokenizer_config.json");
    writeFileSync(
      configPath,
      JSON.stringify({
        bos_token: { content: "<|endoftext|>" },
        eos_token: "<|endoftext|>",
        chat_template: "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
      }),
    );
    const tok = await tokenizerFromHfFolder(dir);
    assert.equal(tok.bosTokenId, 50256);
    assert.equal(tok.bosToken, "<|endoftext|>");
    assert.equal(tok.chatTemplate?.file, configPath);
    assert.equal(tok.chatTemplate?.field, "chat_template");
    assert.equal(renderChatTemplate(tok.chatTemplate!, { messages: [{ role: "user", content: "hi" }] }), "user: hi\n");

    writeFileSync(configPath, JSON.stringify({ chat_template: "{% for m in messages %}{{ m.content }" }));
    const broken = await tokenizerFromHfFolder(dir);
    assert.throws(
      () => renderChatTemplate(broken.chatTemplate!, { messages: [{ role: "user", content: "hi" }] }),
      (e: unknown) => e instanceof ChatTemplateError && e.file === configPath && e.field === "chat_template",
    );

    writeFileSync(configPath, "{ not json");
    await assert.rejects(tokenizerFromHfFolder(dir), (e: unknown) => e instanceof TokenizerError && e.file === configPath);

    rmSync(configPath);
    writeFileSync(join(dir, "tokenizer.json"), '{"model": ');
    await assert.rejects(tokenizerFromHfFolder(dir), (e: unknown) => e instanceof TokenizerError && e.file === join(dir, "tokenizer.json"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a folder without tokenizer.json → TokenizerError naming the file; a missing folder names the folder", async () => {
  const dir = tempDir("hf");
  try {
    await assert.rejects(
      tokenizerFromHfFolder(dir),
      (e: unknown) => e instanceof TokenizerError && e.file === join(dir, "tokenizer.json") && /not found/.test(e.message),
    );
    await assert.rejects(tokenizerFromHfFolder(join(dir, "nope")), (e: unknown) => e instanceof TokenizerError && e.file === join(dir, "nope"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
