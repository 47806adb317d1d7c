/** One interface over every tokenizer onepass loads (GGUF vocabularies, tokenizer.json). */
export interface EncodeOptions {
  /** Prepend BOS when the tokenizer's model expects it (default: the model's own add_bos setting). */
  addBos?: boolean;
  /** Recognise special/control token strings such as `<|im_start|>` in the text (default true). */
  parseSpecial?: boolean;
  /** Append EOS (default: the model's own add_eos setting, usually false). */
  addEos?: boolean;
}

export interface DecodeOptions {
  /** Drop control/special tokens (BOS, EOS, ...) from the text (default true). */
  skipSpecial?: boolean;
}

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId?: number;
  readonly eosTokenIds: number[];
  /** Whether encode() adds BOS by default (GGUF `tokenizer.ggml.add_bos_token`, tokenizer.json post-processor). */
  readonly addBosByDefault: boolean;
  /** Text form of special tokens for chat templates. */
  readonly bosToken?: string;
  readonly eosToken?: string;
  encode(text: string, options?: EncodeOptions): number[];
  decode(ids: readonly number[], options?: DecodeOptions): string;
  /** The raw piece of one token (e.g. "▁the", "<0x0A>", "Ġthe"). */
  idToToken(id: number): string | undefined;
  tokenToId(token: string): number | undefined;
  /** True for control/special tokens. */
  isSpecial(id: number): boolean;
  /** The model's own chat template and where it was read from (absent when the model ships none). */
  readonly chatTemplate?: ChatTemplateSource;
}

/** A chat template and the file/field it came from, so that template errors can name their source. */
export interface ChatTemplateSource {
  template: string;
  file: string;
  field: string;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool" | string;
  content: string;
}
