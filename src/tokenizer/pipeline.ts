/**
 * The one Tokenizer implementation behind both loaders: special tokens are split out of the text here
 * (so `parseSpecial` can be honoured), and each raw-text fragment goes through the components of an
 * `@huggingface/tokenizers` Tokenizer (normalizer → pre-tokenizer → model). Decoding is supplied by the
 * loader (GGUF: byte-exact llama.cpp-style pieces; tokenizer.json: the library's decoder chain).
 */
import type { Tokenizer as LibraryTokenizer } from "@huggingface/tokenizers";
import type { ChatTemplateSource, DecodeOptions, EncodeOptions, Tokenizer } from "./types.js";
import type { SpecialTokenSplitter } from "./special.js";
import { InvalidArgumentError, TokenizerError } from "../errors.js";

/** The Tokenizer facts a loader states as they are (addBosByDefault is derived from defaultPrefixIds). */
type TokenizerFacts = Pick<Tokenizer, "vocabSize" | "bosTokenId" | "eosTokenIds" | "bosToken" | "eosToken" | "chatTemplate" | "idToToken" | "tokenToId">;

export interface PipelineConfig extends TokenizerFacts {
  /** Name of the file the tokenizer was built from, for error messages. */
  source: string;
  library: LibraryTokenizer;
  /** Token ids of pre-tokenised words, appended to `out`, in place of the library's own model (GGUF: CompactBpe). */
  model?: (words: string[], out: number[]) => void;
  splitter: SpecialTokenSplitter;
  /** Ids put before / after the text by default (BOS / EOS as the model's settings say). */
  defaultPrefixIds: number[];
  defaultSuffixIds: number[];
  specialIds: ReadonlySet<number>;
  decode: (ids: readonly number[], skipSpecial: boolean) => string;
}

export class PipelineTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId?: number;
  readonly eosTokenIds: number[];
  readonly addBosByDefault: boolean;
  readonly bosToken?: string;
  readonly eosToken?: string;
  /** The model's own chat template, if it ships one. */
  readonly chatTemplate?: ChatTemplateSource;
  readonly source: string;
  private readonly config: PipelineConfig;

  constructor(config: PipelineConfig) {
    this.config = config;
    this.source = config.source;
    this.vocabSize = config.vocabSize;
    this.bosTokenId = config.bosTokenId;
    this.eosTokenIds = config.eosTokenIds;
    this.bosToken = config.bosToken;
    this.eosToken = config.eosToken;
    this.chatTemplate = config.chatTemplate;
    this.addBosByDefault = config.bosTokenId !== undefined && config.defaultPrefixIds.includes(config.bosTokenId);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== "string") throw new InvalidArgumentError(`encode() needs a string, got ${typeof text}`);
    const ids: number[] = []; // [T]
    const fragments = this.config.splitter.split(text, options.parseSpecial ?? true);
    for (let i = 0; i < fragments.length; i++) {
      const fragment = fragments[i];
      if (typeof fragment === "number") ids.push(fragment);
      else this.encodeRawText(fragment, i, ids);
    }
    return [...this.prefixIds(options.addBos), ...ids, ...this.suffixIds(options.addEos)];
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new InvalidArgumentError(`token id ${String(id)} at index ${i} is outside the vocabulary (size ${this.vocabSize})`, {
          file: this.source,
          offset: i,
        });
      }
    }
    if (ids.length === 0) return "";
    return this.config.decode(ids, options.skipSpecial ?? true);
  }

  idToToken(id: number): string | undefined {
    return this.config.idToToken(id);
  }

  tokenToId(token: string): number | undefined {
    return this.config.tokenToId(token);
  }

  isSpecial(id: number): boolean {
    return this.config.specialIds.has(id);
  }

  private prefixIds(addBos: boolean | undefined): number[] {
    if (addBos === undefined) return this.config.defaultPrefixIds;
    if (!addBos) return [];
    if (this.config.defaultPrefixIds.length > 0) return this.config.defaultPrefixIds;
    if (this.bosTokenId === undefined) throw new InvalidArgumentError("addBos: this tokenizer has no BOS token", { file: this.source });
    return [this.bosTokenId];
  }

  private suffixIds(addEos: boolean | undefined): number[] {
    if (addEos === undefined) return this.config.defaultSuffixIds;
    if (!addEos) return [];
    if (this.config.defaultSuffixIds.length > 0) return this.config.defaultSuffixIds;
    if (this.eosTokenIds.length === 0) throw new InvalidArgumentError("addEos: this tokenizer has no EOS token", { file: this.source });
    return [this.eosTokenIds[0]];
  }

  /** normalizer → pre-tokenizer → model of the library, for one fragment between special tokens. */
  private encodeRawText(text: string, sectionIndex: number, out: number[]): void {
    const lib = this.config.library;
    let normalized = text;
    if (lib.normalizer !== null) normalized = lib.normalizer(normalized);
    if (normalized.length === 0) return;
    const words = lib.pre_tokenizer !== null ? lib.pre_tokenizer(normalized, { section_index: sectionIndex }) : [normalized];
    if (this.config.model !== undefined) {
      this.config.model(words, out);
      return;
    }
    if (lib.model === null) throw new TokenizerError("tokenizer has no model", { file: this.source, field: "model" });
    const pieces = lib.model(words);
    const tokensToIds = lib.model.tokens_to_ids;
    for (const piece of pieces) {
      const id = tokensToIds.get(piece) ?? lib.model.unk_token_id;
      if (id === undefined) {
        throw new TokenizerError(`piece ${JSON.stringify(piece)} is not in the vocabulary and there is no unknown token`, {
          file: this.source,
        });
      }
      out.push(id);
    }
  }
}
