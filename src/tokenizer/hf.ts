/**
 * Tokenizers from a Hugging Face folder: tokenizer.json (required) loaded with `@huggingface/tokenizers`,
 * plus tokenizer_config.json (optional) for BOS/EOS names, add_bos/add_eos and the chat template.
 * Fully offline: only the two local files are read.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer as LibraryTokenizer } from "@huggingface/tokenizers";
import { TokenizerError } from "../errors.js";
import { PipelineTokenizer } from "./pipeline.js";
import { SpecialTokenSplitter, type SpecialTokenEntry } from "./special.js";
import type { ChatTemplateSource } from "./types.js";

type Json = Record<string, unknown>;

const END_OF_TURN_TEXTS = new Set(["<|endoftext|>", "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|end_of_text|>", "</s>"]);

function readJsonFile(file: string, required: boolean): Json | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!required && code === "ENOENT") return undefined;
    throw new TokenizerError(code === "ENOENT" ? "file not found" : `cannot read: ${(err as Error).message}`, { file }, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const m = /position (\d+)/.exec((err as Error).message);
    throw new TokenizerError(`invalid JSON: ${(err as Error).message}`, { file, offset: m ? Number(m[1]) : undefined }, { cause: err });
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TokenizerError("expected a JSON object at the top level", { file, offset: 0 });
  }
  return value as Json;
}

/** A special-token entry of tokenizer_config.json: a plain string or an AddedToken-like {content}. */
function tokenText(config: Json | undefined, field: string, file: string): string | undefined {
  const value = config?.[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "object" && typeof (value as Json).content === "string") return (value as Json).content as string;
  throw new TokenizerError("expected a string or an object with a string `content`", { file, field });
}

function optionalBool(config: Json | undefined, field: string, file: string): boolean | undefined {
  const value = config?.[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean") throw new TokenizerError(`expected a boolean, got ${JSON.stringify(value)}`, { file, field });
  return value;
}

/** `chat_template` is a string, or a list of {name, template} where "default" is the one to use. */
function chatTemplateOf(config: Json | undefined, file: string): ChatTemplateSource | undefined {
  const value = config?.chat_template;
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return { template: value, file, field: "chat_template" };
  if (Array.isArray(value)) {
    const named = value.find((v) => v !== null && typeof v === "object" && (v as Json).name === "default") ?? value[0];
    if (named !== undefined && typeof (named as Json).template === "string") {
      return { template: (named as Json).template as string, file, field: "chat_template" };
    }
  }
  throw new TokenizerError("expected a template string or a list of {name, template}", { file, field: "chat_template" });
}

export async function tokenizerFromHfFolder(dir: string): Promise<PipelineTokenizer> {
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) throw new TokenizerError("not a folder (expected a folder holding tokenizer.json)", { file: dir });
  const tokenizerFile = join(dir, "tokenizer.json");
  const configFile = join(dir, "tokenizer_config.json");
  const tokenizerJson = readJsonFile(tokenizerFile, true) as Json;
  const config = readJsonFile(configFile, false);
  if (!Array.isArray(tokenizerJson.added_tokens)) tokenizerJson.added_tokens = [];
  for (const key of ["normalizer", "pre_tokenizer", "post_processor", "decoder"]) {
    if (!(key in tokenizerJson)) tokenizerJson[key] = null;
  }
  if (tokenizerJson.model === null || typeof tokenizerJson.model !== "object") {
    throw new TokenizerError("missing or not an object", { file: tokenizerFile, field: "model" });
  }
  const cleanUp = optionalBool(config, "clean_up_tokenization_spaces", configFile) ?? false;
  let library: LibraryTokenizer;
  try {
    library = new LibraryTokenizer(tokenizerJson, { clean_up_tokenization_spaces: cleanUp });
  } catch (err) {
    throw new TokenizerError(`unsupported or malformed tokenizer: ${(err as Error).message}`, { file: tokenizerFile }, { cause: err });
  }

  // Added tokens: special ones are matched only when parsing specials, the others always.
  const entries: SpecialTokenEntry[] = [];
  const specialIds = new Set<number>();
  const addedTokens = tokenizerJson.added_tokens as Json[];
  for (let i = 0; i < addedTokens.length; i++) {
    const t = addedTokens[i];
    if (typeof t?.content !== "string" || !Number.isInteger(t.id)) {
      throw new TokenizerError(`entry ${i} lacks a string content or an integer id`, { file: tokenizerFile, field: "added_tokens" });
    }
    const special = t.special === true;
    if (special) specialIds.add(t.id as number);
    entries.push({ id: t.id as number, text: t.content, onlyWhenParsingSpecial: special, lstrip: t.lstrip === true, rstrip: t.rstrip === true });
  }

  const model = library.model;
  if (model === null) throw new TokenizerError("tokenizer has no model", { file: tokenizerFile, field: "model" });
  const vocabSize = model.vocab.length;
  const idOf = (text: string | undefined, field: string): number | undefined => {
    if (text === undefined) return undefined;
    const id = library.token_to_id(text);
    if (id === undefined) throw new TokenizerError(`token ${JSON.stringify(text)} is not in the vocabulary`, { file: configFile, field });
    return id;
  };

  // What the post-processor puts around a sequence by default (e.g. BOS for Llama, nothing for GPT-2).
  const marker = "\u0000onepass-marker\u0000";
  let prefixTokens: string[] = [];
  let suffixTokens: string[] = [];
  if (library.post_processor !== null) {
    const processed = (library.post_processor as unknown as (t: string[], p: null, add: boolean) => { tokens: string[] })([marker], null, true);
    const at = processed.tokens.indexOf(marker);
    if (at >= 0) {
      prefixTokens = processed.tokens.slice(0, at);
      suffixTokens = processed.tokens.slice(at + 1);
    }
  }
  const toIds = (toks: string[]): number[] =>
    toks.map((t) => {
      const id = library.token_to_id(t);
      if (id === undefined) throw new TokenizerError(`post-processor token ${JSON.stringify(t)} is not in the vocabulary`, { file: tokenizerFile, field: "post_processor" });
      return id;
    });
  let defaultPrefixIds = toIds(prefixTokens);
  let defaultSuffixIds = toIds(suffixTokens);

  const bosToken = tokenText(config, "bos_token", configFile);
  const eosToken = tokenText(config, "eos_token", configFile);
  let bosTokenId = idOf(bosToken, "bos_token");
  if (bosTokenId === undefined && defaultPrefixIds.length === 1) bosTokenId = defaultPrefixIds[0];
  const eosTokenIds: number[] = [];
  const eosId = idOf(eosToken, "eos_token");
  if (eosId !== undefined) eosTokenIds.push(eosId);
  for (const e of entries) {
    if (specialIds.has(e.id) && END_OF_TURN_TEXTS.has(e.text) && !eosTokenIds.includes(e.id)) eosTokenIds.push(e.id);
  }
  // Without a post-processor, tokenizer_config's add_bos_token / add_eos_token decide.
  if (library.post_processor === null) {
    if (optionalBool(config, "add_bos_token", configFile) === true && bosTokenId !== undefined) defaultPrefixIds = [bosTokenId];
    if (optionalBool(config, "add_eos_token", configFile) === true && eosId !== undefined) defaultSuffixIds = [eosId];
  }

  const decode = (ids: readonly number[], skipSpecial: boolean): string => {
    const kept = skipSpecial ? ids.filter((id) => !specialIds.has(id)) : ids.slice();
    if (kept.length === 0) return "";
    return library.decode(kept, { skip_special_tokens: false, clean_up_tokenization_spaces: cleanUp });
  };

  return new PipelineTokenizer({
    source: tokenizerFile,
    library,
    splitter: new SpecialTokenSplitter(entries),
    vocabSize,
    bosTokenId,
    eosTokenIds,
    bosToken: bosToken ?? (bosTokenId !== undefined ? library.id_to_token(bosTokenId) : undefined),
    eosToken: eosToken ?? (eosTokenIds.length > 0 ? library.id_to_token(eosTokenIds[0]) : undefined),
    defaultPrefixIds,
    defaultSuffixIds,
    specialIds,
    idToToken: (id) => (Number.isInteger(id) ? library.id_to_token(id) : undefined),
    tokenToId: (token) => library.token_to_id(token),
    decode,
    chatTemplate: chatTemplateOf(config, configFile),
  });
}
