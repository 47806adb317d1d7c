/**
 * Writes a LoadedModel as a true Hugging Face folder: config.json, model.safetensors (HF tensor names),
 * generation_config.json, and tokenizer files (converted from the GGUF vocabulary, or copied from an HF
 * source). GGUF `llama` files store q/k rows permuted for interleaved RoPE (llama.cpp's converter); they are
 * un-permuted here so the folder uses transformers' rotate_half convention like every HF Llama checkpoint.
 */
import { copyFileSync, existsSync, mkdirSync, renameSync } from "node:fs";
import { join, resolve } from "node:path";
import { InvalidArgumentError, UnsupportedModelError } from "../errors.js";
import { writeFileAtomic } from "../util/atomic.js";
import { makeDirs } from "../util/fs-errors.js";
import { TensorNames, type LoadedModel, type ModelSpec } from "../model/spec.js";
import { writeSafetensors, type SafetensorsTensorInput } from "../model/safetensors.js";
import { specToHfConfig } from "../model/hf/config.js";
import { isOnnxModel } from "../model/onnx/index.js";
import { canonicalToHf } from "../model/hf/names.js";
import { GgufTokenType, type GgufVocab } from "../tokenizer/gguf-vocab.js";
import { ggufMetadataValues, readGgufVocab } from "../model/gguf/tokenizer.js";
import { ggufVocabFromMetadata } from "../tokenizer/gguf-vocab.js";
import { ggufVocabToTokenizerJson } from "../tokenizer/gguf-convert.js";

export type HfDType = "f32" | "f16" | "bf16";
const ST_DTYPE = { f32: "F32", f16: "F16", bf16: "BF16" } as const;
const TORCH_DTYPE = { f32: "float32", f16: "float16", bf16: "bfloat16" } as const;

/**
 * llama.cpp's converter permutes q/k rows per head: HF row (j·hd/2 + i) of a head goes to row (2i + j),
 * i < hd/2, j ∈ {0,1}. This undoes it: w [heads·hd, cols] in GGUF (interleaved) row order → HF (rotate_half) order.
 */
export function unpermuteRopeRows(w: Float32Array, heads: number, headDim: number, cols: number): Float32Array {
  if (w.length !== heads * headDim * cols || headDim % 2 !== 0) {
    throw new InvalidArgumentError(`cannot permute ${w.length} values as ${heads} heads × ${headDim} rows × ${cols} cols`);
  }
  const out = new Float32Array(w.length); // [heads·hd, cols]
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const hfRow = h * headDim + j * half + i;
        const ggufRow = h * headDim + 2 * i + j;
        out.set(w.subarray(ggufRow * cols, (ggufRow + 1) * cols), hfRow * cols);
      }
    }
  }
  return out;
}

function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n");
}

/** The spec the HF folder describes: same model, rotate_half RoPE. */
export function hfSpecOf(spec: ModelSpec): ModelSpec {
  return { ...spec, ropeStyle: "half" };
}

export interface WriteHfFolderOptions {
  /** Storage dtype of every tensor (default f32: exact for f32 sources and for dequantised GGUF types). */
  dtype?: HfDType;
  /** Where the model came from: a .gguf file (vocabulary converted) or an HF folder (tokenizer files copied). */
  sourcePath: string;
}

/** Writes `model` into `outDir` (created if needed). Returns the files written. */
export async function writeHfFolder(model: LoadedModel, outDir: string, options: WriteHfFolderOptions): Promise<string[]> {
  const dtype = options.dtype ?? "f32";
  if (!(dtype in ST_DTYPE)) throw new InvalidArgumentError(`dtype must be f32, f16 or bf16, got ${dtype}`, { field: "dtype" });
  const { spec, weights } = model;
  makeDirs(outDir);
  const unpermute = spec.ropeStyle === "interleaved";
  if (unpermute && spec.architecture !== "llama") {
    throw new UnsupportedModelError(`interleaved RoPE for ${spec.architecture} has no HF equivalent`, { file: weights.path, field: "ropeStyle" });
  }
  const tensors: Record<string, SafetensorsTensorInput> = {};
  for (const t of weights.list()) {
    if (t.name === TensorNames.output && spec.tiedEmbeddings) continue;
    const hfName = canonicalToHf(t.name);
    if (hfName === undefined) throw new UnsupportedModelError("tensor has no Hugging Face counterpart", { file: weights.path, field: t.name });
    const m = /^blk\.\d+\.attn_(q|k)\.(weight|bias)$/.exec(t.name);
    const heads = m?.[1] === "q" ? spec.heads : spec.kvHeads;
    tensors[hfName] = {
      shape: t.shape,
      dtype: ST_DTYPE[dtype],
      data: () => {
        const w = weights.readF32(t.name); // t.shape
        if (!unpermute || m === null) return w;
        return unpermuteRopeRows(w, heads, spec.headDim, m[2] === "weight" ? t.shape[1] : 1);
      },
    };
  }
  const files: string[] = [];
  const stPath = join(outDir, "model.safetensors");
  writeSafetensors(stPath, tensors, { format: "pt" });
  files.push(stPath);

  const hfSpec = hfSpecOf(spec);
  const configPath = join(outDir, "config.json");
  writeJsonAtomic(configPath, specToHfConfig(hfSpec, TORCH_DTYPE[dtype]));
  files.push(configPath);
  const genPath = join(outDir, "generation_config.json");
  const gen: Record<string, unknown> = { _from_model_config: true };
  if (spec.bosTokenId !== undefined) gen.bos_token_id = spec.bosTokenId;
  if (spec.eosTokenIds.length > 0) gen.eos_token_id = spec.eosTokenIds.length === 1 ? spec.eosTokenIds[0] : spec.eosTokenIds;
  writeJsonAtomic(genPath, gen);
  files.push(genPath);

  files.push(...(await writeTokenizerFiles(model, options.sourcePath, outDir)));
  return files;
}

/**
 * The tokenizer files of a model into `outDir`: converted from the GGUF vocabulary (tokenizer.json +
 * tokenizer_config.json with the chat template), or copied from a folder source. Returns the files written.
 */
export async function writeTokenizerFiles(model: LoadedModel, sourcePath: string, outDir: string): Promise<string[]> {
  const files: string[] = [];
  if (model.format === "gguf") {
    // the metadata loadModel already read; a second header parse only for models built by hand
    const vocab = model.ggufMetadata !== undefined ? ggufVocabFromMetadata(ggufMetadataValues(model.ggufMetadata), sourcePath) : readGgufVocab(sourcePath);
    const tokPath = join(outDir, "tokenizer.json");
    writeJsonAtomic(tokPath, hfTokenizerJsonFromGguf(vocab));
    const tcPath = join(outDir, "tokenizer_config.json");
    writeJsonAtomic(tcPath, tokenizerConfigFromGguf(vocab, model.spec, model.chatTemplate));
    files.push(tokPath, tcPath);
  } else {
    const dir = isOnnxModel(model) ? model.onnx.dir : sourcePath;
    for (const name of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "tokenizer.model"]) {
      const src = join(dir, name);
      if (existsSync(src) && resolve(src) !== resolve(join(outDir, name))) {
        const tmp = join(outDir, `${name}.tmp-${process.pid}`);
        copyFileSync(src, tmp);
        renameSync(tmp, join(outDir, name));
        files.push(join(outDir, name));
      }
    }
  }
  return files;
}

/**
 * tokenizer.json for a GGUF vocabulary: the tokenizer module's conversion (model, normalizer, pre-tokenizer,
 * decoder) plus what a standalone HF tokenizer also needs: control/user-defined tokens as added_tokens, and
 * a post-processor that prepends BOS when the GGUF says add_bos_token.
 */
export function hfTokenizerJsonFromGguf(vocab: GgufVocab): Record<string, unknown> {
  const json = ggufVocabToTokenizerJson(vocab);
  const added: Record<string, unknown>[] = [];
  vocab.tokens.forEach((content, id) => {
    const type = vocab.tokenTypes[id];
    if (type === GgufTokenType.CONTROL || type === GgufTokenType.USER_DEFINED || type === GgufTokenType.UNKNOWN) {
      added.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: type === GgufTokenType.USER_DEFINED, special: type !== GgufTokenType.USER_DEFINED });
    }
  });
  json.added_tokens = added;
  // The prepended "▁" (add_space_prefix) must come off again when decoding, as transformers' LlamaConverter does.
  if (vocab.model === "llama" && vocab.addSpacePrefix) {
    const decoder = json.decoder as { type: string; decoders: unknown[] };
    json.decoder = { ...decoder, decoders: [...decoder.decoders, { type: "Strip", content: " ", start: 1, stop: 0 }] };
  }
  const bos = vocab.bosId !== undefined ? vocab.tokens[vocab.bosId] : undefined;
  const eos = vocab.eosId !== undefined ? vocab.tokens[vocab.eosId] : undefined;
  const single: unknown[] = [];
  const pair: unknown[] = [];
  const specials: Record<string, unknown> = {};
  if (vocab.addBos && bos !== undefined) {
    single.push({ SpecialToken: { id: bos, type_id: 0 } });
    pair.push({ SpecialToken: { id: bos, type_id: 0 } });
    specials[bos] = { id: bos, ids: [vocab.bosId], tokens: [bos] };
  }
  single.push({ Sequence: { id: "A", type_id: 0 } });
  pair.push({ Sequence: { id: "A", type_id: 0 } });
  if (vocab.addEos && eos !== undefined) {
    single.push({ SpecialToken: { id: eos, type_id: 0 } });
    specials[eos] = { id: eos, ids: [vocab.eosId], tokens: [eos] };
  }
  if (vocab.addBos && bos !== undefined) pair.push({ SpecialToken: { id: bos, type_id: 1 } });
  pair.push({ Sequence: { id: "B", type_id: 1 } });
  if (vocab.addEos && eos !== undefined) pair.push({ SpecialToken: { id: eos, type_id: 1 } });
  json.post_processor = Object.keys(specials).length > 0 ? { type: "TemplateProcessing", single, pair, special_tokens: specials } : null;
  return json;
}

function tokenizerConfigFromGguf(vocab: GgufVocab, spec: ModelSpec, chatTemplate?: string): Record<string, unknown> {
  const tok = (id: number | undefined) => (id !== undefined ? vocab.tokens[id] : null);
  const cfg: Record<string, unknown> = {
    tokenizer_class: vocab.model === "llama" ? "LlamaTokenizerFast" : "PreTrainedTokenizerFast",
    bos_token: tok(vocab.bosId),
    eos_token: tok(vocab.eosId),
    unk_token: tok(vocab.unkId),
    add_bos_token: vocab.addBos,
    add_eos_token: vocab.addEos,
    model_max_length: spec.contextLength,
    clean_up_tokenization_spaces: false,
  };
  if (vocab.model === "llama") cfg.legacy = false;
  if (chatTemplate !== undefined) cfg.chat_template = chatTemplate;
  return cfg;
}
