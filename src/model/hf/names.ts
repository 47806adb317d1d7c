/**
 * Hugging Face tensor names (model.layers.{i}.self_attn.q_proj.weight, ...) ↔ canonical GGUF-style names
 * (blk.{i}.attn_q.weight, ...; see TensorNames in ../spec.ts). Shapes are the same [out, in] in both.
 */

const GLOBAL_HF_TO_CANONICAL: Record<string, string> = {
  "model.embed_tokens.weight": "token_embd.weight",
  "model.norm.weight": "output_norm.weight",
  "lm_head.weight": "output.weight",
};

/** Suffix after `model.layers.{i}.` → suffix after `blk.{i}.`. */
const BLOCK_HF_TO_CANONICAL: Record<string, string> = {
  "input_layernorm.weight": "attn_norm.weight",
  "self_attn.q_proj.weight": "attn_q.weight",
  "self_attn.k_proj.weight": "attn_k.weight",
  "self_attn.v_proj.weight": "attn_v.weight",
  "self_attn.q_proj.bias": "attn_q.bias",
  "self_attn.k_proj.bias": "attn_k.bias",
  "self_attn.v_proj.bias": "attn_v.bias",
  "self_attn.q_norm.weight": "attn_q_norm.weight",
  "self_attn.k_norm.weight": "attn_k_norm.weight",
  "self_attn.o_proj.weight": "attn_output.weight",
  "post_attention_layernorm.weight": "ffn_norm.weight",
  "mlp.gate_proj.weight": "ffn_gate.weight",
  "mlp.up_proj.weight": "ffn_up.weight",
  "mlp.down_proj.weight": "ffn_down.weight",
};

const GLOBAL_CANONICAL_TO_HF = Object.fromEntries(Object.entries(GLOBAL_HF_TO_CANONICAL).map(([a, b]) => [b, a]));
const BLOCK_CANONICAL_TO_HF = Object.fromEntries(Object.entries(BLOCK_HF_TO_CANONICAL).map(([a, b]) => [b, a]));

/** HF name → canonical name, or undefined for tensors onepass does not use (e.g. rotary_emb.inv_freq). */
export function hfToCanonical(hfName: string): string | undefined {
  const g = GLOBAL_HF_TO_CANONICAL[hfName];
  if (g !== undefined) return g;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  if (m === null) return undefined;
  const suffix = BLOCK_HF_TO_CANONICAL[m[2]];
  return suffix === undefined ? undefined : `blk.${m[1]}.${suffix}`;
}

/** Canonical name → HF name, or undefined when the canonical name has no HF counterpart. */
export function canonicalToHf(name: string): string | undefined {
  const g = GLOBAL_CANONICAL_TO_HF[name];
  if (g !== undefined) return g;
  const m = /^blk\.(\d+)\.(.+)$/.exec(name);
  if (m === null) return undefined;
  const suffix = BLOCK_CANONICAL_TO_HF[m[2]];
  return suffix === undefined ? undefined : `model.layers.${m[1]}.${suffix}`;
}

/** HF tensors that are known and deliberately ignored (buffers some old checkpoints saved). */
export function isIgnorableHfTensor(hfName: string): boolean {
  return /\.rotary_emb\.inv_freq$/.test(hfName);
}
