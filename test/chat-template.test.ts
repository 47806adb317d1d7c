/**
 * Chat templates as published in the models' tokenizer_config.json, rendered with @huggingface/jinja; the
 * expected strings are written by hand from each format's definition.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_CHAT_TEMPLATE, encodeChat, renderChatTemplate } from "../src/tokenizer/index.js";
import { tokenizerFromGguf } from "../src/model/gguf/tokenizer.js";
import { ChatTemplateError } from "../src/errors.js";

// ChatML, as in teknium/OpenHermes-2.5-Mistral-7B tokenizer_config.json.
const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
// meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json.
const LLAMA3 =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

const MESSAGES = [
  { role: "system", content: "You are a helpful assistant." },
  { role: "user", content: "Hello!" },
  { role: "assistant", content: "Hi! How can I help?" },
  { role: "user", content: "  Tell me a joke.\n" },
];

test("ChatML renders the exact turn format, with and without the generation prompt", () => {
  const body =
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
    "<|im_start|>user\nHello!<|im_end|>\n" +
    "<|im_start|>assistant\nHi! How can I help?<|im_end|>\n" +
    "<|im_start|>user\n  Tell me a joke.\n<|im_end|>\n";
  assert.equal(renderChatTemplate(CHATML, { messages: MESSAGES }), body);
  assert.equal(renderChatTemplate(CHATML, { messages: MESSAGES, addGenerationPrompt: true }), body + "<|im_start|>assistant\n");
  // The documented fallback is ChatML.
  assert.equal(renderChatTemplate(DEFAULT_CHAT_TEMPLATE, { messages: MESSAGES, addGenerationPrompt: true }), body + "<|im_start|>assistant\n");
});

test("Llama 3 renders the exact header/eot format (BOS first, content trimmed)", () => {
  const body =
    "<|begin_of_text|>" +
    "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>" +
    "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>" +
    "<|start_header_id|>assistant<|end_header_id|>\n\nHi! How can I help?<|eot_id|>" +
    "<|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|>";
  const opts = { messages: MESSAGES, bosToken: "<|begin_of_text|>", eosToken: "<|eot_id|>" };
  assert.equal(renderChatTemplate(LLAMA3, opts), body);
  assert.equal(
    renderChatTemplate(LLAMA3, { ...opts, addGenerationPrompt: true }),
    body + "<|start_header_id|>assistant<|end_header_id|>\n\n",
  );
});

test("a template that does not parse or fails to render → ChatTemplateError naming its source", () => {
  const source = { template: "{% for m in messages %}{{ m.content }", file: "model.gguf", field: "tokenizer.chat_template" };
  assert.throws(
    () => renderChatTemplate(source, { messages: MESSAGES }),
    (e: unknown) => e instanceof ChatTemplateError && e.file === "model.gguf" && e.field === "tokenizer.chat_template",
  );
  assert.throws(
    () => renderChatTemplate("{{ raise_exception('roles must alternate') }}", { messages: MESSAGES }),
    (e: unknown) => e instanceof ChatTemplateError && e.field === "chat_template" && /roles must alternate/.test(e.message),
  );
  assert.throws(() => renderChatTemplate(CHATML, { messages: [{ role: "user" } as never] }), (e: Error) => e.name === "InvalidArgumentError");
});

test("encodeChat uses the model's own template (Phi-3 GGUF) and does not double the BOS the template writes", async () => {
  const tok = await tokenizerFromGguf("test/fixtures/ggml-vocab/ggml-vocab-phi-3.gguf");
  const ids = encodeChat(tok, [{ role: "user", content: "Hi" }]);
  // Template: bos_token + '<|user|>\n' + content + '<|end|>\n' + '<|assistant|>\n'.
  assert.equal(ids[0], 1);
  assert.notEqual(ids[1], 1);
  assert.deepEqual(ids.slice(0, 2), [1, 32010]);
  assert.ok(ids.includes(32007) && ids.at(-1) === 32001);
});
