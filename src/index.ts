/** onepass public API: the CLI and the server use exactly these exports. */
export * from "./errors.js";
export * from "./model/spec.js";
export { HiddenStates } from "./engine/hidden.js";
export type { Tokenizer, EncodeOptions, DecodeOptions, ChatMessage } from "./tokenizer/types.js";
