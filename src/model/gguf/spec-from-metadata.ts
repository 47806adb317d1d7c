/**
 * GGUF metadata + tensor table → ModelSpec, with every tensor's shape checked against the metadata.
 */
import { ModelFormatError, UnsupportedModelError } from "../../errors.js";
import { TensorNames, type Architecture, type ModelSpec } from "../spec.js";
import type { GgufHeader, GgufMetadataEntry, GgufTensorEntry } from "./reader.js";

const ARCHITECTURES: readonly Architecture[] = ["llama", "qwen2", "qwen3"];

/** Typed access to metadata values with errors naming the key and its offset. */
export class MetadataView {
  constructor(private readonly header: GgufHeader) {}

  entry(key: string): GgufMetadataEntry | undefined {
    return this.header.metadata.get(key);
  }
  private fail(key: string, msg: string): never {
    throw new ModelFormatError(msg, { file: this.header.path, field: key, offset: this.entry(key)?.offset });
  }
  /** A finite number (any numeric type), or undefined when absent. */
  number(key: string): number | undefined {
    const e = this.entry(key);
    if (e === undefined) return undefined;
    const v = e.value;
    const n = typeof v === "bigint" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isFinite(n)) this.fail(key, `expected a number, got ${describe(v)}`);
    return n;
  }
  requiredNumber(key: string): number {
    const n = this.number(key);
    if (n === undefined) throw new ModelFormatError("required metadata key is missing", { file: this.header.path, field: key });
    return n;
  }
  /** A positive integer (counts, widths). */
  positiveInt(key: string, required: true): number;
  positiveInt(key: string, required: false): number | undefined;
  positiveInt(key: string, required: boolean): number | undefined {
    const n = required ? this.requiredNumber(key) : this.number(key);
    if (n === undefined) return undefined;
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 31) this.fail(key, `expected a positive integer, got ${n}`);
    return n;
  }
  /** A token id (non-negative integer below 2^31), or undefined when absent or the "none" marker -1/0xFFFFFFFF. */
  tokenId(key: string): number | undefined {
    const n = this.number(key);
    if (n === undefined || n === -1 || n === 0xffffffff) return undefined;
    if (!Number.isInteger(n) || n < 0 || n >= 2 ** 31) this.fail(key, `expected a token id, got ${n}`);
    return n;
  }
  string(key: string): string | undefined {
    const e = this.entry(key);
    if (e === undefined) return undefined;
    if (typeof e.value !== "string") this.fail(key, `expected a string, got ${describe(e.value)}`);
    return e.value;
  }
  /** Length of an array value, or undefined when absent. */
  arrayLength(key: string): number | undefined {
    const e = this.entry(key);
    if (e === undefined) return undefined;
    if (!Array.isArray(e.value)) this.fail(key, `expected an array, got ${describe(e.value)}`);
    return e.value.length;
  }
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === "string") return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)}`;
  return `${typeof v} ${String(v)}`;
}

/** Build the ModelSpec for a GGUF file and check the tensor table against it. */
export function specFromGguf(header: GgufHeader): { spec: ModelSpec; chatTemplate?: string } {
  const file = header.path;
  const md = new MetadataView(header);
  const archEntry = md.entry("general.architecture");
  if (archEntry === undefined) throw new ModelFormatError("required metadata key is missing", { file, field: "general.architecture" });
  const arch = md.string("general.architecture")!;
  if (!(ARCHITECTURES as readonly string[]).includes(arch)) {
    throw new UnsupportedModelError(`unsupported architecture "${arch}" (onepass supports ${ARCHITECTURES.join(", ")})`, {
      file, field: "general.architecture", offset: archEntry.offset,
    });
  }
  const architecture = arch as Architecture;
  const k = (suffix: string) => `${arch}.${suffix}`;

  const layers = md.positiveInt(k("block_count"), true);
  const dim = md.positiveInt(k("embedding_length"), true);
  const ffnDim = md.positiveInt(k("feed_forward_length"), true);
  const heads = md.positiveInt(k("attention.head_count"), true);
  const kvHeads = md.positiveInt(k("attention.head_count_kv"), false) ?? heads;
  if (heads % kvHeads !== 0) {
    throw new ModelFormatError(`head_count ${heads} is not a multiple of head_count_kv ${kvHeads}`, {
      file, field: k("attention.head_count_kv"), offset: md.entry(k("attention.head_count_kv"))?.offset,
    });
  }
  const keyLength = md.positiveInt(k("attention.key_length"), false);
  if (keyLength === undefined && dim % heads !== 0) {
    throw new ModelFormatError(`embedding_length ${dim} is not a multiple of head_count ${heads}`, { file, field: k("attention.head_count") });
  }
  const headDim = keyLength ?? dim / heads;
  const valueLength = md.positiveInt(k("attention.value_length"), false);
  if (valueLength !== undefined && valueLength !== headDim) {
    throw new UnsupportedModelError(`value_length ${valueLength} differs from key_length ${headDim}`, {
      file, field: k("attention.value_length"), offset: md.entry(k("attention.value_length"))?.offset,
    });
  }
  const ropeDim = md.positiveInt(k("rope.dimension_count"), false) ?? headDim;
  if (ropeDim > headDim || ropeDim % 2 !== 0) {
    throw new ModelFormatError(`rope.dimension_count ${ropeDim} must be even and at most the head size ${headDim}`, {
      file, field: k("rope.dimension_count"), offset: md.entry(k("rope.dimension_count"))?.offset,
    });
  }
  const contextLength = md.positiveInt(k("context_length"), true);
  const rmsNormEps = md.requiredNumber(k("attention.layer_norm_rms_epsilon"));
  if (!(rmsNormEps > 0 && rmsNormEps < 1)) {
    throw new ModelFormatError(`layer_norm_rms_epsilon ${rmsNormEps} is not in (0, 1)`, { file, field: k("attention.layer_norm_rms_epsilon") });
  }
  const ropeTheta = md.number(k("rope.freq_base")) ?? 10000;
  if (!(ropeTheta > 1)) throw new ModelFormatError(`rope.freq_base ${ropeTheta} must be > 1`, { file, field: k("rope.freq_base") });
  // llama3 scaling is stored as the rope_freqs tensor, read by loadGguf (rope-scaling.ts); other types are refused.
  const scalingType = md.string(k("rope.scaling.type"));
  if (scalingType !== undefined && scalingType !== "none") {
    throw new UnsupportedModelError(`rope scaling type "${scalingType}" is not supported`, { file, field: k("rope.scaling.type"), offset: md.entry(k("rope.scaling.type"))?.offset });
  }

  const tensors = new Map(header.tensors.map((t) => [t.name, t]));
  const embd = tensors.get(TensorNames.tokenEmbedding);
  if (embd === undefined) throw new ModelFormatError("required tensor is missing", { file, field: TensorNames.tokenEmbedding });
  const tokenCount = md.arrayLength("tokenizer.ggml.tokens");
  const vocabSize = tokenCount ?? embd.shape[0]!;

  const expect = (name: string, shape: number[], required = true): GgufTensorEntry | undefined => {
    const t = tensors.get(name);
    if (t === undefined) {
      if (required) throw new ModelFormatError(`required tensor is missing (expected shape [${shape.join(", ")}])`, { file, field: name });
      return undefined;
    }
    if (t.shape.length !== shape.length || t.shape.some((n, i) => n !== shape[i])) {
      throw new ModelFormatError(`tensor shape [${t.shape.join(", ")}] contradicts the metadata: expected [${shape.join(", ")}]`, {
        file, field: name, offset: t.entryOffset,
      });
    }
    return t;
  };
  expect(TensorNames.tokenEmbedding, [vocabSize, dim]);
  expect(TensorNames.outputNorm, [dim]);
  const tiedEmbeddings = expect(TensorNames.output, [vocabSize, dim], false) === undefined;
  const qDim = heads * headDim;
  const kvDim = kvHeads * headDim;
  const qkvBias = architecture === "qwen2" || tensors.has(TensorNames.block(0).qBias);
  const qkNorm = architecture === "qwen3";
  for (let i = 0; i < layers; i++) {
    const n = TensorNames.block(i);
    expect(n.attnNorm, [dim]);
    expect(n.q, [qDim, dim]);
    expect(n.k, [kvDim, dim]);
    expect(n.v, [kvDim, dim]);
    expect(n.o, [dim, qDim]);
    expect(n.ffnNorm, [dim]);
    expect(n.gate, [ffnDim, dim]);
    expect(n.up, [ffnDim, dim]);
    expect(n.down, [dim, ffnDim]);
    if (qkvBias) {
      expect(n.qBias, [qDim]);
      expect(n.kBias, [kvDim]);
      expect(n.vBias, [kvDim]);
    }
    if (qkNorm) {
      expect(n.qNorm, [headDim]);
      expect(n.kNorm, [headDim]);
    }
  }
  const extraBlock = tensors.get(`blk.${layers}.attn_q.weight`);
  if (extraBlock !== undefined) {
    throw new ModelFormatError(`tensor belongs to block ${layers} but block_count is ${layers}`, { file, field: extraBlock.name, offset: extraBlock.entryOffset });
  }

  const eosTokenIds: number[] = [];
  for (const key of ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]) {
    const id = md.tokenId(key);
    if (id === undefined) continue;
    if (id >= vocabSize) throw new ModelFormatError(`token id ${id} is outside the vocabulary (${vocabSize})`, { file, field: key, offset: md.entry(key)?.offset });
    if (!eosTokenIds.includes(id)) eosTokenIds.push(id);
  }
  const bosTokenId = md.tokenId("tokenizer.ggml.bos_token_id");
  if (bosTokenId !== undefined && bosTokenId >= vocabSize) {
    throw new ModelFormatError(`token id ${bosTokenId} is outside the vocabulary (${vocabSize})`, { file, field: "tokenizer.ggml.bos_token_id" });
  }

  const spec: ModelSpec = {
    architecture,
    name: md.string("general.name"),
    blocks: layers,
    dim,
    ffnDim,
    heads,
    kvHeads,
    headDim,
    vocabSize,
    contextLength,
    rmsNormEps,
    ropeTheta,
    ropeDim,
    ropeStyle: architecture === "llama" ? "interleaved" : "half",
    qkvBias,
    qkNorm,
    tiedEmbeddings,
    bosTokenId,
    eosTokenIds,
  };
  if (spec.name === undefined) delete spec.name;
  if (spec.bosTokenId === undefined) delete spec.bosTokenId;
  return { spec, chatTemplate: md.string("tokenizer.chat_template") };
}
