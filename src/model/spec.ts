/**
 * What the graph builder and the reference forward pass need to know about a decoder, whatever file format
 * it came from (GGUF, Hugging Face folder, ...). Tensor names in a WeightSource follow the GGUF convention
 * (see `TensorNames`), with shapes in row-major PyTorch order [out, in].
 */
export type Architecture = "llama" | "qwen2" | "qwen3";

/**
 * How rotary embeddings pair up dimensions within a head.
 * - "interleaved": pairs (0,1), (2,3), ... — GGUF `llama` files (llama.cpp permutes q/k weights on convert).
 * - "half": pairs (i, i + rotDim/2) — Hugging Face `rotate_half`; GGUF `qwen2`/`qwen3` (NEOX style).
 */
export type RopeStyle = "interleaved" | "half";

export interface RopeScaling {
  /** Only `llama3` (Llama 3.1/3.2) frequency scaling is implemented. */
  type: "llama3";
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalContextLength: number;
}

export interface ModelSpec {
  architecture: Architecture;
  /** Human-readable model name from the file's metadata, if any. */
  name?: string;
  /** Transformer blocks L. HiddenStates then has L + 1 layers (embeddings, then the output of each block). */
  blocks: number;
  /** Model width d (embedding length). */
  dim: number;
  /** FFN inner width. */
  ffnDim: number;
  /** Query heads. */
  heads: number;
  /** Key/value heads (GQA when < heads). */
  kvHeads: number;
  /** Per-head width (usually dim / heads; qwen3 may differ). */
  headDim: number;
  vocabSize: number;
  /** Maximum context the model was trained for. */
  contextLength: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** How many of the head's dimensions are rotated (= headDim for all supported families). */
  ropeDim: number;
  ropeStyle: RopeStyle;
  ropeScaling?: RopeScaling;
  /** q/k/v projections carry biases (qwen2). */
  qkvBias: boolean;
  /** Per-head RMSNorm on q and k before RoPE (qwen3). */
  qkNorm: boolean;
  /** The output projection shares the token embedding matrix (no separate `output.weight`). */
  tiedEmbeddings: boolean;
  bosTokenId?: number;
  /** All ids that end generation. */
  eosTokenIds: number[];
}

/** Canonical (GGUF-style) tensor names. Shapes are PyTorch order [out, in]. */
export const TensorNames = {
  /** [vocab, dim] */
  tokenEmbedding: "token_embd.weight",
  /** [dim] */
  outputNorm: "output_norm.weight",
  /** [vocab, dim]; absent when tiedEmbeddings */
  output: "output.weight",
  block(i: number) {
    const p = `blk.${i}.`;
    return {
      /** [dim] */ attnNorm: p + "attn_norm.weight",
      /** [heads*headDim, dim] */ q: p + "attn_q.weight",
      /** [kvHeads*headDim, dim] */ k: p + "attn_k.weight",
      /** [kvHeads*headDim, dim] */ v: p + "attn_v.weight",
      /** [heads*headDim] (qwen2) */ qBias: p + "attn_q.bias",
      /** [kvHeads*headDim] (qwen2) */ kBias: p + "attn_k.bias",
      /** [kvHeads*headDim] (qwen2) */ vBias: p + "attn_v.bias",
      /** [headDim] (qwen3) */ qNorm: p + "attn_q_norm.weight",
      /** [headDim] (qwen3) */ kNorm: p + "attn_k_norm.weight",
      /** [dim, heads*headDim] */ o: p + "attn_output.weight",
      /** [dim] */ ffnNorm: p + "ffn_norm.weight",
      /** [ffnDim, dim] */ gate: p + "ffn_gate.weight",
      /** [ffnDim, dim] */ up: p + "ffn_up.weight",
      /** [dim, ffnDim] */ down: p + "ffn_down.weight",
    };
  },
} as const;

/** Storage type of a tensor as held by its source file. */
export type TensorDType = "f32" | "f16" | "bf16" | "q8_0" | "q4_0" | "q4_k" | "q6_k";

export interface TensorInfo {
  name: string;
  /** PyTorch order, e.g. [out, in] for a linear weight. */
  shape: number[];
  dtype: TensorDType;
}

/**
 * A weight matrix in ONNX Runtime's MatMulNBits layout (4 bits, block 32), produced only where that is
 * exact for the source data (e.g. GGUF Q4_0: value = scale * (q - 8)).
 */
export interface Int4Blocks {
  /** N = rows (out features), K = cols (in features). */
  n: number;
  k: number;
  blockSize: 32;
  /** [N, ceil(K/32), 16] uint8, element 2j in the low nibble, 2j+1 in the high nibble. */
  data: Uint8Array;
  /** [N * ceil(K/32)] float32 scales. */
  scales: Float32Array;
  /** Packed uint8 zero points [N, ceil(ceil(K/32)/2)], or undefined for the implicit 8. */
  zeroPoints?: Uint8Array;
}

/** Lazy access to a model's tensors; reads happen per tensor, never the whole file at once. */
export interface WeightSource {
  /** The file or folder the weights come from (for error messages). */
  readonly path: string;
  list(): TensorInfo[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** Dequantised float32 copy, row-major in `info(name).shape` order. */
  readF32(name: string): Float32Array;
  /** MatMulNBits-ready blocks when the stored form converts exactly, else undefined. */
  readInt4?(name: string): Int4Blocks | undefined;
  /** Release file handles. */
  close(): void;
}

/** A loaded checkpoint: architecture, weights, and what the tokenizer and chat template need. */
export interface LoadedModel {
  spec: ModelSpec;
  weights: WeightSource;
  /** Stable identity of the weights (sha256 over the file(s) content), used to key graph caches and probes. */
  fingerprint: string;
  /** "gguf" | "hf" | "onnx" */
  format: "gguf" | "hf" | "onnx";
  /** Chat template text (jinja), when the checkpoint carries one. */
  chatTemplate?: string;
  /** GGUF only: the header's metadata as loadModel read it; the tokenizer is built from it (no second parse). */
  ggufMetadata?: ReadonlyMap<string, { readonly value: unknown }>;
}
