/**
 * Chat templates rendered with `@huggingface/jinja` (the Jinja subset that Hugging Face chat templates use).
 * A template that does not parse or fails while rendering is a ChatTemplateError naming where the template
 * came from (tokenizer_config.json field chat_template, GGUF field tokenizer.chat_template, ...).
 */
import { Template } from "@huggingface/jinja";
import { ChatTemplateError, InvalidArgumentError } from "../errors.js";
import type { ChatMessage, ChatTemplateSource, Tokenizer } from "./types.js";

/**
 * The fallback used when a model ships no chat template: ChatML, as published in the tokenizer_config.json
 * of ChatML models (OpenHermes, Qwen without tools). Each turn is `<|im_start|>{role}\n{content}<|im_end|>\n`
 * and the generation prompt is `<|im_start|>assistant\n`. On a vocabulary without the `<|im_start|>` /
 * `<|im_end|>` tokens the markers are tokenized as plain text.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface RenderChatOptions {
  messages: readonly ChatMessage[];
  /** End with the header that opens the assistant's turn (default false). */
  addGenerationPrompt?: boolean;
  bosToken?: string;
  eosToken?: string;
  /** Where the template came from, for error messages (overrides the source of a ChatTemplateSource). */
  source?: { file?: string; field?: string };
  /** Further template variables (e.g. tools, date_string), passed through unchanged. */
  [extra: string]: unknown;
}

const parsedTemplates = new Map<string, Template>(); // template text → parsed program
const MAX_CACHED_TEMPLATES = 32;

function parse(template: string, where: { file?: string; field?: string }): Template {
  let parsed = parsedTemplates.get(template);
  if (parsed !== undefined) return parsed;
  try {
    parsed = new Template(template);
  } catch (err) {
    throw new ChatTemplateError(`template does not parse: ${(err as Error).message}`, where, { cause: err });
  }
  if (parsedTemplates.size >= MAX_CACHED_TEMPLATES) parsedTemplates.clear();
  parsedTemplates.set(template, parsed);
  return parsed;
}

/** Renders a chat template for a conversation; returns the prompt text. */
export function renderChatTemplate(template: string | ChatTemplateSource, options: RenderChatOptions): string {
  const text = typeof template === "string" ? template : template.template;
  const where = options.source ?? (typeof template === "string" ? { field: "chat_template" } : { file: template.file, field: template.field });
  if (typeof text !== "string") throw new InvalidArgumentError("chat template must be a string", where);
  const { messages, addGenerationPrompt, bosToken, eosToken, source: _source, ...extra } = options;
  if (!Array.isArray(messages)) throw new InvalidArgumentError("messages must be an array", { field: "messages" });
  messages.forEach((m, i) => {
    if (m === null || typeof m !== "object" || typeof m.role !== "string" || typeof m.content !== "string") {
      throw new InvalidArgumentError(`message ${i} needs a string role and a string content`, { field: `messages[${i}]` });
    }
  });
  const program = parse(text, where);
  try {
    return program.render({
      ...extra,
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: addGenerationPrompt ?? false,
      bos_token: bosToken ?? "",
      eos_token: eosToken ?? "",
    });
  } catch (err) {
    throw new ChatTemplateError(`template failed to render: ${(err as Error).message}`, where, { cause: err });
  }
}

/** The tokenizer's own template, or DEFAULT_CHAT_TEMPLATE when the model ships none. */
export function chatTemplateFor(tokenizer: Tokenizer): ChatTemplateSource {
  return tokenizer.chatTemplate ?? { template: DEFAULT_CHAT_TEMPLATE, file: "onepass", field: "DEFAULT_CHAT_TEMPLATE" };
}

/**
 * Renders the conversation with the model's template and encodes it, special tokens parsed. BOS is added
 * only when the tokenizer adds it by default and the rendered text does not already start with it.
 */
export function encodeChat(
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
  options: { addGenerationPrompt?: boolean; template?: string | ChatTemplateSource; [extra: string]: unknown } = {},
): number[] {
  const { template, addGenerationPrompt, ...extra } = options;
  const text = renderChatTemplate(template ?? chatTemplateFor(tokenizer), {
    ...extra,
    messages,
    addGenerationPrompt: addGenerationPrompt ?? true,
    bosToken: tokenizer.bosToken,
    eosToken: tokenizer.eosToken,
  });
  const startsWithBos = tokenizer.bosToken !== undefined && tokenizer.bosToken.length > 0 && text.startsWith(tokenizer.bosToken);
  return tokenizer.encode(text, { parseSpecial: true, addBos: tokenizer.addBosByDefault && !startsWithBos });
}
