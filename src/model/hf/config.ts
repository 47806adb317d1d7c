/**
 * Hugging Face `config.json` (+ `generation_config.json`) → ModelSpec, and the reverse for `convert --to hf`.
 * Supported: LlamaForCausalLM, MistralForCausalLM (→ "llama"), Qwen2ForCausalLM, Qwen3ForCausalLM.
 * HF checkpoints use rotate_half RoPE with unpermuted q/k weights, so every HF spec has ropeStyle "half".
 */
import { ModelFormatError, UnsupportedModelError } from "../../errors.js";
import type { Architecture, ModelSpec, RopeScaling } from "../spec.js";

/** config.json architectures[0] → our architecture. */
export const HF_ARCHITECTURES: Record<string, Architecture> = {
  LlamaForCausalLM: "llama",
  MistralForCausalLM: "llama",
  Qwen2ForCausalLM: "qwen2",
  Qwen3ForCausalLM: "qwen3",
};

/** config.json torch_dtype → the safetensors dtype it implies. */
export const TORCH_DTYPE_TO_ST: Record<string, "F32" | "F16" | "BF16"> = {
  float32: "F32",
  float16: "F16",
  bfloat16: "BF16",
};

type Json = Record<string, unknown>;

function num(cfg: Json, file: string, key: string, opts: { int?: boolean; positive?: boolean } = {}): number {
  const v = cfg[key];
  if (typeof v !== "number" || !Number.isFinite(v) || (opts.int && !Number.isInteger(v)) || (opts.positive && v <= 0)) {
    throw new ModelFormatError(`expected a ${opts.positive ? "positive " : ""}${opts.int ? "integer" : "number"}, got ${JSON.stringify(v)}`, { file, field: key });
  }
  return v;
}

function optNum(cfg: Json, file: string, key: string, fallback: number, opts: { int?: boolean; positive?: boolean } = {}): number {
  return cfg[key] === undefined || cfg[key] === null ? fallback : num(cfg, file, key, opts);
}

function idList(v: unknown, file: string, field: string): number[] | undefined {
  if (v === undefined || v === null) return undefined;
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => Number.isInteger(x) && x >= 0)) throw new ModelFormatError(`expected a token id or list of ids, got ${JSON.stringify(v)}`, { file, field });
  return list as number[];
}

export interface ParsedHfConfig {
  spec: ModelSpec;
  /** Safetensors dtype implied by torch_dtype (or `dtype`), when the config states one. */
  expectedDType?: "F32" | "F16" | "BF16";
  /** Which config field stated the dtype ("torch_dtype" or "dtype"). */
  dtypeField?: string;
  /** tie_word_embeddings as stated (undefined when absent). */
  tieWordEmbeddings?: boolean;
}

/**
 * Parses config.json (already JSON-decoded) into a ModelSpec. `generation` is generation_config.json when
 * present: its eos_token_id / bos_token_id take precedence (that is where Llama 3 lists all its stop ids).
 */
export function parseHfConfig(cfg: Json, file: string, generation?: Json, generationFile?: string): ParsedHfConfig {
  const archs = cfg.architectures;
  if (!Array.isArray(archs) || archs.length === 0 || typeof archs[0] !== "string") {
    throw new ModelFormatError(`expected a non-empty list of architecture names, got ${JSON.stringify(archs)}`, { file, field: "architectures" });
  }
  const architecture = HF_ARCHITECTURES[archs[0]];
  if (architecture === undefined) {
    throw new UnsupportedModelError(`architecture ${archs[0]} is not supported (supported: ${Object.keys(HF_ARCHITECTURES).join(", ")})`, { file, field: "architectures" });
  }
  const dim = num(cfg, file, "hidden_size", { int: true, positive: true });
  const heads = num(cfg, file, "num_attention_heads", { int: true, positive: true });
  const kvHeads = optNum(cfg, file, "num_key_value_heads", heads, { int: true, positive: true });
  if (heads % kvHeads !== 0) throw new ModelFormatError(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`, { file, field: "num_key_value_heads" });
  const headDim = optNum(cfg, file, "head_dim", dim / heads, { int: true, positive: true });
  if (cfg.head_dim === undefined && dim % heads !== 0) throw new ModelFormatError(`hidden_size ${dim} is not a multiple of num_attention_heads ${heads} and head_dim is absent`, { file, field: "head_dim" });
  const ropeScaling = parseRopeScaling(cfg.rope_scaling, file);
  // rope_theta moved into rope_parameters in newer transformers; accept both.
  const ropeParams = (cfg.rope_parameters ?? null) as Json | null;
  const ropeTheta = cfg.rope_theta !== undefined ? num(cfg, file, "rope_theta", { positive: true })
    : ropeParams && typeof ropeParams.rope_theta === "number" ? ropeParams.rope_theta : 10000;
  if (cfg.partial_rotary_factor !== undefined && cfg.partial_rotary_factor !== 1) {
    throw new UnsupportedModelError(`partial_rotary_factor ${JSON.stringify(cfg.partial_rotary_factor)} is not supported`, { file, field: "partial_rotary_factor" });
  }
  if (cfg.mlp_bias === true) throw new UnsupportedModelError("mlp_bias is not supported", { file, field: "mlp_bias" });
  if (architecture === "llama" && cfg.attention_bias === true) {
    throw new UnsupportedModelError("attention_bias (bias on q/k/v/o) is not supported for Llama-family models", { file, field: "attention_bias" });
  }
  if (architecture === "qwen3" && cfg.attention_bias === true) {
    throw new UnsupportedModelError("attention_bias is not supported for Qwen3", { file, field: "attention_bias" });
  }
  const hiddenAct = cfg.hidden_act ?? "silu";
  if (hiddenAct !== "silu") throw new UnsupportedModelError(`hidden_act ${JSON.stringify(hiddenAct)} is not supported (only silu)`, { file, field: "hidden_act" });

  const tie = cfg.tie_word_embeddings;
  if (tie !== undefined && typeof tie !== "boolean") throw new ModelFormatError(`expected a boolean, got ${JSON.stringify(tie)}`, { file, field: "tie_word_embeddings" });

  const genFile = generationFile ?? file;
  const eos = idList(generation?.eos_token_id, genFile, "eos_token_id") ?? idList(cfg.eos_token_id, file, "eos_token_id") ?? [];
  const bos = idList(generation?.bos_token_id, genFile, "bos_token_id") ?? idList(cfg.bos_token_id, file, "bos_token_id");

  let expectedDType: ParsedHfConfig["expectedDType"];
  let dtypeField: string | undefined;
  for (const key of ["torch_dtype", "dtype"]) {
    const v = cfg[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== "string" || TORCH_DTYPE_TO_ST[v] === undefined) {
      throw new UnsupportedModelError(`dtype ${JSON.stringify(v)} is not supported (float32, float16, bfloat16)`, { file, field: key });
    }
    expectedDType = TORCH_DTYPE_TO_ST[v];
    dtypeField = key;
    break;
  }

  const spec: ModelSpec = {
    architecture,
    name: typeof cfg._name_or_path === "string" && cfg._name_or_path !== "" ? cfg._name_or_path : undefined,
    blocks: num(cfg, file, "num_hidden_layers", { int: true, positive: true }),
    dim,
    ffnDim: num(cfg, file, "intermediate_size", { int: true, positive: true }),
    heads,
    kvHeads,
    headDim,
    vocabSize: num(cfg, file, "vocab_size", { int: true, positive: true }),
    contextLength: optNum(cfg, file, "max_position_embeddings", 2048, { int: true, positive: true }),
    rmsNormEps: optNum(cfg, file, "rms_norm_eps", 1e-6, { positive: true }),
    ropeTheta,
    ropeDim: headDim,
    ropeStyle: "half",
    ropeScaling,
    qkvBias: architecture === "qwen2",
    qkNorm: architecture === "qwen3",
    // Decided finally by the loader (a missing lm_head also means tied); transformers' default is false for these families.
    tiedEmbeddings: tie === true,
    bosTokenId: bos?.[0],
    eosTokenIds: eos,
  };
  // Mistral's sliding window: attention equals full attention up to the window, so cap the context there.
  const slidingWindow = cfg.sliding_window;
  const slidingUsed = archs[0] === "MistralForCausalLM" || cfg.use_sliding_window === true;
  if (slidingUsed && typeof slidingWindow === "number" && slidingWindow > 0 && slidingWindow < spec.contextLength) {
    spec.contextLength = slidingWindow;
  }
  if (spec.name === undefined) delete spec.name;
  if (spec.ropeScaling === undefined) delete spec.ropeScaling;
  if (spec.bosTokenId === undefined) delete spec.bosTokenId;
  return { spec, expectedDType, dtypeField, tieWordEmbeddings: tie as boolean | undefined };
}

function parseRopeScaling(v: unknown, file: string): RopeScaling | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) throw new ModelFormatError(`expected an object, got ${JSON.stringify(v)}`, { file, field: "rope_scaling" });
  const r = v as Json;
  const type = r.rope_type ?? r.type;
  if (type === "default") return undefined;
  if (type !== "llama3") {
    throw new UnsupportedModelError(`rope scaling type ${JSON.stringify(type)} is not supported (only llama3)`, { file, field: "rope_scaling.rope_type" });
  }
  const f = (key: string): number => {
    const x = r[key];
    if (typeof x !== "number" || !(x > 0)) throw new ModelFormatError(`expected a positive number, got ${JSON.stringify(x)}`, { file, field: `rope_scaling.${key}` });
    return x;
  };
  return {
    type: "llama3",
    factor: f("factor"),
    lowFreqFactor: f("low_freq_factor"),
    highFreqFactor: f("high_freq_factor"),
    originalContextLength: f("original_max_position_embeddings"),
  };
}

/** The HF architecture class written for a spec by `convert --to hf`. */
export function hfArchitectureFor(spec: ModelSpec): { architectures: string[]; model_type: string } {
  switch (spec.architecture) {
    case "llama": return { architectures: ["LlamaForCausalLM"], model_type: "llama" };
    case "qwen2": return { architectures: ["Qwen2ForCausalLM"], model_type: "qwen2" };
    case "qwen3": return { architectures: ["Qwen3ForCausalLM"], model_type: "qwen3" };
  }
}

/** ModelSpec → config.json object (a true transformers config for the matching *ForCausalLM class). */
export function specToHfConfig(spec: ModelSpec, torchDtype: "float32" | "float16" | "bfloat16"): Json {
  const cfg: Json = {
    ...hfArchitectureFor(spec),
    hidden_size: spec.dim,
    intermediate_size: spec.ffnDim,
    num_hidden_layers: spec.blocks,
    num_attention_heads: spec.heads,
    num_key_value_heads: spec.kvHeads,
    head_dim: spec.headDim,
    vocab_size: spec.vocabSize,
    max_position_embeddings: spec.contextLength,
    rms_norm_eps: spec.rmsNormEps,
    rope_theta: spec.ropeTheta,
    hidden_act: "silu",
    tie_word_embeddings: spec.tiedEmbeddings,
    torch_dtype: torchDtype,
    attention_bias: spec.architecture === "llama" ? false : undefined,
    bos_token_id: spec.bosTokenId,
    eos_token_id: spec.eosTokenIds.length === 1 ? spec.eosTokenIds[0] : spec.eosTokenIds.length > 1 ? spec.eosTokenIds : undefined,
    use_cache: true,
  };
  if (spec.ropeScaling !== undefined) {
    cfg.rope_scaling = {
      rope_type: "llama3",
      factor: spec.ropeScaling.factor,
      low_freq_factor: spec.ropeScaling.lowFreqFactor,
      high_freq_factor: spec.ropeScaling.highFreqFactor,
      original_max_position_embeddings: spec.ropeScaling.originalContextLength,
    };
  }
  if (spec.name !== undefined) cfg._name_or_path = spec.name;
  for (const k of Object.keys(cfg)) if (cfg[k] === undefined) delete cfg[k];
  return cfg;
}
