// Writes small random-weight Hugging Face folders (config.json + safetensors) for tests, using the tensor
// names transformers' modeling_llama.py / modeling_qwen2.py / modeling_qwen3.py give their parameters.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeSafetensors, type SafetensorsTensorInput } from "../src/model/safetensors.js";
import { mulberry32 } from "./helpers.js";

export interface RandomHfOptions {
  arch: "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM" | "Qwen3ForCausalLM";
  dtype: "F32" | "F16" | "BF16";
  blocks?: number;
  dim?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  ffn?: number;
  vocab?: number;
  tie?: boolean;
  seed?: number;
  /** Extra/overriding config.json fields. */
  config?: Record<string, unknown>;
  /** Standard deviation of the q/k/v/o/gate/up weights (down gets 2/3 of it). Default 0.15. */
  linearStd?: number;
  /** Storage dtype of the 1-D tensors (norms, biases), when it differs from `dtype` (as real BF16 checkpoints with F32 norms). */
  vectorDtype?: "F32" | "F16" | "BF16";
  /** Split the tensors over two shards with model.safetensors.index.json. */
  sharded?: boolean;
}

/** Writes the folder; returns the float32 values written per HF tensor name (before dtype rounding). */
export function writeRandomHfFolder(dir: string, o: RandomHfOptions): Map<string, Float32Array> {
  const L = o.blocks ?? 2;
  const d = o.dim ?? 64;
  const H = o.heads ?? 4;
  const KV = o.kvHeads ?? 2;
  const hd = o.headDim ?? d / H;
  const F = o.ffn ?? 128;
  const V = o.vocab ?? 256;
  const rand = mulberry32(o.seed ?? 1);
  // Box–Muller normal from the seeded uniforms.
  const normal = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const add = (name: string, shape: number[], std: number, mean = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n); // shape
    for (let i = 0; i < n; i++) data[i] = mean + std * normal();
    tensors.set(name, { shape, data });
  };
  const ls = o.linearStd ?? 0.15;
  const qwen2 = o.arch === "Qwen2ForCausalLM";
  const qwen3 = o.arch === "Qwen3ForCausalLM";
  add("model.embed_tokens.weight", [V, d], 1);
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}.`;
    add(p + "input_layernorm.weight", [d], 0.1, 1);
    add(p + "self_attn.q_proj.weight", [H * hd, d], ls);
    add(p + "self_attn.k_proj.weight", [KV * hd, d], ls);
    add(p + "self_attn.v_proj.weight", [KV * hd, d], ls);
    if (qwen2) {
      add(p + "self_attn.q_proj.bias", [H * hd], 0.1);
      add(p + "self_attn.k_proj.bias", [KV * hd], 0.1);
      add(p + "self_attn.v_proj.bias", [KV * hd], 0.1);
    }
    if (qwen3) {
      add(p + "self_attn.q_norm.weight", [hd], 0.1, 1);
      add(p + "self_attn.k_norm.weight", [hd], 0.1, 1);
    }
    add(p + "self_attn.o_proj.weight", [d, H * hd], ls);
    add(p + "post_attention_layernorm.weight", [d], 0.1, 1);
    add(p + "mlp.gate_proj.weight", [F, d], ls);
    add(p + "mlp.up_proj.weight", [F, d], ls);
    add(p + "mlp.down_proj.weight", [d, F], (ls * 2) / 3);
  }
  add("model.norm.weight", [d], 0.1, 1);
  if (!o.tie) add("lm_head.weight", [V, d], 0.3);

  const torchDtype = { F32: "float32", F16: "float16", BF16: "bfloat16" }[o.dtype];
  const modelType = { LlamaForCausalLM: "llama", MistralForCausalLM: "mistral", Qwen2ForCausalLM: "qwen2", Qwen3ForCausalLM: "qwen3" }[o.arch];
  const config: Record<string, unknown> = {
    architectures: [o.arch],
    model_type: modelType,
    hidden_size: d,
    intermediate_size: F,
    num_hidden_layers: L,
    num_attention_heads: H,
    num_key_value_heads: KV,
    vocab_size: V,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    hidden_act: "silu",
    tie_word_embeddings: o.tie ?? false,
    torch_dtype: torchDtype,
    bos_token_id: 1,
    eos_token_id: 2,
    ...(o.headDim !== undefined ? { head_dim: hd } : {}),
    ...o.config,
  };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  const entries = [...tensors.entries()];
  const input = (list: typeof entries): Record<string, SafetensorsTensorInput> =>
    Object.fromEntries(list.map(([name, t]) => [name, { shape: t.shape, dtype: t.shape.length === 1 ? (o.vectorDtype ?? o.dtype) : o.dtype, data: t.data }]));
  if (o.sharded) {
    const half = Math.ceil(entries.length / 2);
    const shards = [entries.slice(0, half), entries.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((list, s) => {
      const file = `model-0000${s + 1}-of-00002.safetensors`;
      writeSafetensors(join(dir, file), input(list), { format: "pt" });
      for (const [name] of list) weightMap[name] = file;
    });
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  } else {
    writeSafetensors(join(dir, "model.safetensors"), input(entries), { format: "pt" });
  }
  return new Map(entries.map(([name, t]) => [name, t.data]));
}
