/** Tokenizers (GGUF vocabularies, tokenizer.json folders), chat templates and streaming decode. */
export type { Tokenizer, EncodeOptions, DecodeOptions, ChatMessage, ChatTemplateSource } from "./types.js";
export { tokenizerFromGgufMetadata, tokenizerFromGgufVocab } from "./gguf.js";
export { tokenizerFromHfFolder } from "./hf.js";
export { renderChatTemplate, chatTemplateFor, encodeChat, DEFAULT_CHAT_TEMPLATE, type RenderChatOptions } from "./chat.js";
export { createTextStreamer, type TextStreamer, type TextStreamerOptions } from "./streamer.js";
export { SUPPORTED_PRE_TOKENIZERS } from "./pretokenize.js";
