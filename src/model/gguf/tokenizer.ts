/**
 * GGUF vocabularies and tokenizers read through onepass's one GGUF header parser (reader.ts): the tokenizer
 * layer turns metadata into a tokenizer, this module supplies the metadata from a file or a loaded model.
 */
import { OnepassError, TokenizerError } from "../../errors.js";
import { ggufVocabFromMetadata, type GgufVocab } from "../../tokenizer/gguf-vocab.js";
import { tokenizerFromGgufVocab } from "../../tokenizer/gguf.js";
import type { PipelineTokenizer } from "../../tokenizer/pipeline.js";
import { readGgufHeader, type GgufMetadataEntry } from "./reader.js";

/** key → value of a parsed header's metadata (the entries' types dropped). */
export function ggufMetadataValues(metadata: ReadonlyMap<string, { readonly value: unknown }>): Record<string, unknown> {
  const plain: Record<string, unknown> = {};
  for (const [key, entry] of metadata) plain[key] = entry.value;
  return plain;
}

/** Reads a GGUF file's header (metadata only; tensor data is not touched) and extracts its vocabulary. */
export function readGgufVocab(path: string): GgufVocab {
  let metadata: ReadonlyMap<string, GgufMetadataEntry>;
  try {
    metadata = readGgufHeader(path).metadata;
  } catch (err) {
    // callers of the tokenizer API get the tokenizer's error type, naming the file; the header's reason is kept
    const reason = err instanceof OnepassError || err instanceof Error ? err.message : String(err);
    throw new TokenizerError(`cannot read GGUF metadata: ${reason}`, { file: path }, { cause: err });
  }
  return ggufVocabFromMetadata(ggufMetadataValues(metadata), path);
}

/** Reads only the metadata of a GGUF file (no tensor data) and builds its tokenizer. */
export async function tokenizerFromGguf(path: string): Promise<PipelineTokenizer> {
  return tokenizerFromGgufVocab(readGgufVocab(path));
}
