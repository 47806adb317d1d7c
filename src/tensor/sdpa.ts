/**
 * Scaled dot-product attention for the MHA probe, fused into two ONNX Runtime graphs (forward; backward),
 * so the T×T score work, masking, softmax and the head transposes run in ORT instead of JS loops.
 * Layout in and out: [G, B, T, H, hd] (what the Q/K/V projections produce, reshaped — no JS permute).
 * Padding keys get an additive −1e9 bias (one mask row per prompt b, shared by the G groups and H heads).
 * float64 and tiny inputs use the composite tape ops (these are what the gradient checks verify).
 */
import { inMemoryModelBytes, nodeProto, valueInfo } from "../onnx/proto.js";
import "../util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import type { RowMask, Tape, Tensor } from "./autograd.js";
import { kernelStats, ORT_MULTITHREAD_MACS, probeSession } from "./kernel.js";

export interface AttentionDims {
  G: number;
  B: number;
  T: number;
  H: number;
  hd: number;
}

/** Composite score elements (G·B·H·T·T) above which the fused ORT kernel is used. */
export const FUSED_MIN_SCORES = 1 << 14;
let fusedEnabled = true;
/** Turn the fused kernel off (tests compare both paths). */
export function setFusedAttention(on: boolean): void {
  fusedEnabled = on;
}

type NodeSpec = [op: string, inputs: string[], outputs: string[], attrs?: Record<string, number | number[]>];

/** A float32 input/output of `rank` symbolic dims (`<name>_<axis>`). */
function vi(name: string, rank: number) {
  return valueInfo(name, "float32", Array.from({ length: rank }, (_, i) => `${name}_${i}`));
}

function model(name: string, inputs: [string, number][], outputs: [string, number][], nodes: NodeSpec[]): Uint8Array {
  return inMemoryModelBytes({
    name,
    producer: "onepass-probe",
    nodes: nodes.map(([op, input, output, attrs]) => nodeProto(op, input, output, attrs)),
    inputs: inputs.map(([n, r]) => vi(n, r)),
    outputs: outputs.map(([n, r]) => vi(n, r)),
  });
}

const HEADS_FIRST = [0, 1, 3, 2, 4]; // [G,B,T,H,hd] ↔ [G,B,H,T,hd]
const SWAP_LAST = [0, 1, 2, 4, 3];

function forwardModel(): Uint8Array {
  return model("sdpa_fwd", [["Q", 5], ["K", 5], ["V", 5], ["Bias", 5], ["Scale", 1]], [["O", 5], ["P", 5]], [
    ["Transpose", ["Q"], ["Qh"], { perm: HEADS_FIRST }],
    ["Transpose", ["K"], ["KhT"], { perm: [0, 1, 3, 4, 2] }],
    ["Transpose", ["V"], ["Vh"], { perm: HEADS_FIRST }],
    ["MatMul", ["Qh", "KhT"], ["S0"]],
    ["Mul", ["S0", "Scale"], ["S1"]],
    ["Add", ["S1", "Bias"], ["S"]],
    ["Softmax", ["S"], ["P"], { axis: -1 }],
    ["MatMul", ["P", "Vh"], ["Oh"]],
    ["Transpose", ["Oh"], ["O"], { perm: HEADS_FIRST }],
  ]);
}

function backwardModel(): Uint8Array {
  return model("sdpa_bwd", [["dO", 5], ["P", 5], ["Q", 5], ["K", 5], ["V", 5], ["Scale", 1]], [["dQ", 5], ["dK", 5], ["dV", 5]], [
    ["Transpose", ["dO"], ["dOh"], { perm: HEADS_FIRST }],
    ["Transpose", ["V"], ["VhT"], { perm: [0, 1, 3, 4, 2] }],
    ["MatMul", ["dOh", "VhT"], ["dP"]], // [G,B,H,T,T]
    ["Transpose", ["P"], ["PT"], { perm: SWAP_LAST }],
    ["MatMul", ["PT", "dOh"], ["dVh"]],
    ["Transpose", ["dVh"], ["dV"], { perm: HEADS_FIRST }],
    ["Mul", ["P", "dP"], ["PdP"]],
    ["Constant", [], ["Axes"], { value_ints: [-1] }],
    ["ReduceSum", ["PdP", "Axes"], ["RowDot"], { keepdims: 1 }],
    ["Sub", ["dP", "RowDot"], ["dS0"]],
    ["Mul", ["P", "dS0"], ["dS1"]],
    ["Mul", ["dS1", "Scale"], ["dS"]],
    ["Transpose", ["K"], ["Kh"], { perm: HEADS_FIRST }],
    ["Transpose", ["Q"], ["Qh"], { perm: HEADS_FIRST }],
    ["MatMul", ["dS", "Kh"], ["dQh"]],
    ["Transpose", ["dQh"], ["dQ"], { perm: HEADS_FIRST }],
    ["Transpose", ["dS"], ["dST"], { perm: SWAP_LAST }],
    ["MatMul", ["dST", "Qh"], ["dKh"]],
    ["Transpose", ["dKh"], ["dK"], { perm: HEADS_FIRST }],
  ]);
}

/** One ORT run, counted in kernelStats with its multiply-adds. */
async function timedRun(s: ort.InferenceSession, feeds: Record<string, ort.Tensor>, macs: number): Promise<ort.InferenceSession.ReturnType> {
  const t0 = performance.now();
  const res = await s.run(feeds);
  kernelStats.ortMs += performance.now() - t0;
  kernelStats.ortMacs += macs;
  kernelStats.ortCalls++;
  return res;
}

/** Attention over [G, B, T, H, hd] inputs → [G, B, T, H, hd]; `mask` [B, T] marks real keys (undefined: all). */
export async function attention(tape: Tape, q: Tensor, k: Tensor, v: Tensor, dims: AttentionDims, mask?: Uint8Array): Promise<Tensor> {
  const { G, B, T, H, hd } = dims;
  const scale = 1 / Math.sqrt(hd);
  if (tape.dtype === "f64" || !fusedEnabled || G * B * H * T * T < FUSED_MIN_SCORES) return composite(tape, q, k, v, dims, scale, mask);
  const small = G * B * H * T * T * hd < ORT_MULTITHREAD_MACS;
  const fwd = await probeSession("sdpa_fwd", forwardModel, small), bwd = await probeSession("sdpa_bwd", backwardModel, small);
  const shape = [G, B, T, H, hd];
  const bias = new Float32Array(B * T); // [1, B, 1, 1, T]
  if (mask !== undefined) for (let i = 0; i < B * T; i++) bias[i] = mask[i] !== 0 ? 0 : -1e9;
  const scaleT = new ort.Tensor("float32", Float32Array.of(scale), [1]);
  const res = await timedRun(fwd, {
    Q: new ort.Tensor("float32", q.data as Float32Array, shape),
    K: new ort.Tensor("float32", k.data as Float32Array, shape),
    V: new ort.Tensor("float32", v.data as Float32Array, shape),
    Bias: new ort.Tensor("float32", bias, [1, B, 1, 1, T]),
    Scale: scaleT,
  }, 2 * G * B * H * T * T * hd);
  const p = res["P"].data as Float32Array; // [G, B, H, T, T], kept for the backward pass
  return tape.custom(shape, res["O"].data as Float32Array, [q, k, v], async (dOut) => {
    const g = await timedRun(bwd, {
      dO: new ort.Tensor("float32", dOut as Float32Array, shape),
      P: new ort.Tensor("float32", p, [G, B, H, T, T]),
      Q: new ort.Tensor("float32", q.data as Float32Array, shape),
      K: new ort.Tensor("float32", k.data as Float32Array, shape),
      V: new ort.Tensor("float32", v.data as Float32Array, shape),
      Scale: scaleT,
    }, 4 * G * B * H * T * T * hd);
    return [g["dQ"].data as Float32Array, g["dK"].data as Float32Array, g["dV"].data as Float32Array];
  });
}

/**
 * P = softmax(scale·Q·Kᵀ + bias) in heads-first layout [G,B,H,T,T]. A padding bias rides in the product as one
 * extra column (Q gets a 1, K its key's bias) instead of a broadcast Add over the [T, T] scores.
 */
function pooledScoreNodes(masked: boolean): NodeSpec[] {
  return [
    ["Transpose", ["Q"], ["Qh"], { perm: HEADS_FIRST }],
    ["Mul", ["Qh", "Scale"], ["Qs"]], // scaled on the [T, hd] side, not the [T, T] one
    ["Transpose", ["K"], ["KhT"], { perm: [0, 1, 3, 4, 2] }], // [G,B,H,hd,T]
    ...(masked
      ? ([["Concat", ["Qs", "Ones"], ["Qa"], { axis: -1 }], ["Concat", ["KhT", "BiasRows"], ["KaT"], { axis: -2 }], ["MatMul", ["Qa", "KaT"], ["S"]]] as NodeSpec[])
      : ([["MatMul", ["Qs", "KhT"], ["S"]]] as NodeSpec[])), // [G,B,H,T,T]
    ["Softmax", ["S"], ["P"], { axis: -1 }],
  ];
}

const maskInputs = (masked: boolean): [string, number][] => (masked ? [["Ones", 5], ["BiasRows", 5]] : []);

function pooledForwardModel(masked: boolean): Uint8Array {
  return model(`sdpa_pooled_fwd${masked ? "_masked" : ""}`, [["Q", 5], ["K", 5], ["V", 5], ...maskInputs(masked), ["W", 5], ["Scale", 1]], [["O", 5], ["A", 5]], [
    ...pooledScoreNodes(masked),
    ["Transpose", ["V"], ["Vh"], { perm: HEADS_FIRST }],
    ["MatMul", ["W", "P"], ["A"]], // [G,B,H,1,T]: each key's weight averaged over the valid queries
    ["MatMul", ["A", "Vh"], ["O"]], // [G,B,H,1,hd]
  ]);
}

/*
 * Backward of O = Σ_t w_t Σ_s P[t,s] v_s with P = softmax_s(scale·q_t·k_s + bias_s), w_t = valid_t / n:
 *   dV_s = A_s·dO,  g_s = v_s·dO,  dS[t,s] = w_t·P[t,s]·(g_s − ḡ_t) with ḡ_t = Σ_s P[t,s]·g_s,
 *   dQ_t = scale·Σ_s dS[t,s]·k_s,  dK_s = scale·Σ_t dS[t,s]·q_t.
 * P is recomputed (fetching the [T, T] probabilities from the forward costs more than computing them again);
 * w_t and scale are applied on the [T, hd] sides (to the dQ rows and to q before the dK product), so the only
 * other [T, T] work is ḡ, one Sub, one Mul and the two products.
 */
function pooledBackwardModel(masked: boolean): Uint8Array {
  return model(`sdpa_pooled_bwd${masked ? "_masked" : ""}`, [["dO", 5], ["A", 5], ["Q", 5], ["K", 5], ["V", 5], ...maskInputs(masked), ["W", 5], ["Scale", 1]], [["dQ", 5], ["dK", 5], ["dV", 5]], [
    ...pooledScoreNodes(masked),
    ["Transpose", ["A"], ["Acol"], { perm: SWAP_LAST }], // [G,B,H,T,1]
    ["MatMul", ["Acol", "dO"], ["dVh"]], // [G,B,H,T,hd]
    ["Transpose", ["dVh"], ["dV"], { perm: HEADS_FIRST }],
    ["Transpose", ["V"], ["Vh"], { perm: HEADS_FIRST }],
    ["Transpose", ["dO"], ["dOcol"], { perm: SWAP_LAST }], // [G,B,H,hd,1]
    ["MatMul", ["Vh", "dOcol"], ["Gcol"]], // [G,B,H,T,1]
    ["Transpose", ["Gcol"], ["Grow"], { perm: SWAP_LAST }], // [G,B,H,1,T]
    ["MatMul", ["P", "Gcol"], ["Gbar"]], // [G,B,H,T,1]
    ["Sub", ["Grow", "Gbar"], ["D"]], // [G,B,H,T,T]
    ["Mul", ["P", "D"], ["dS"]], // without w_t and scale
    ["Transpose", ["W"], ["Wcol"], { perm: SWAP_LAST }], // [1,B,1,T,1]
    ["Mul", ["Wcol", "Scale"], ["Ws"]],
    ["Transpose", ["K"], ["Kh"], { perm: HEADS_FIRST }],
    ["MatMul", ["dS", "Kh"], ["dQh0"]],
    ["Mul", ["dQh0", "Ws"], ["dQh"]],
    ["Transpose", ["dQh"], ["dQ"], { perm: HEADS_FIRST }],
    ["Mul", ["Qh", "Ws"], ["Qw"]],
    ["Transpose", ["Qw"], ["QwT"], { perm: SWAP_LAST }], // [G,B,H,hd,T]
    ["MatMul", ["QwT", "dS"], ["dKhT"]], // [G,B,H,hd,T]
    ["Transpose", ["dKhT"], ["dK"], { perm: [0, 1, 4, 2, 3] }],
  ]);
}

/**
 * Attention over [G, B, T, H, hd] inputs, then the mean over each prompt's valid query positions: [G·B, H·hd].
 * Equals `attention` followed by a masked mean pool over T, without building the [T, H·hd] output or the
 * attention's full backward: the mean over queries turns the output gradient into one row per key.
 */
export async function pooledAttention(tape: Tape, q: Tensor, k: Tensor, v: Tensor, dims: AttentionDims, mask?: Uint8Array): Promise<Tensor> {
  const { G, B, T, H, hd } = dims;
  if (tape.dtype === "f64" || !fusedEnabled || G * B * H * T * T < FUSED_MIN_SCORES) {
    const ctx = await attention(tape, q, k, v, dims, mask); // [G, B, T, H, hd]
    return tape.pool(tape.reshape(ctx, [G * B, T, H * hd]), "mean", mask === undefined ? undefined : { mask, maskRows: B, rowsPerMask: 1 });
  }
  const small = G * B * H * T * T * hd < ORT_MULTITHREAD_MACS;
  const masked = mask !== undefined;
  const m = masked ? "_masked" : "";
  const fwd = await probeSession(`sdpa_pooled_fwd${m}`, () => pooledForwardModel(masked), small);
  const bwd = await probeSession(`sdpa_pooled_bwd${m}`, () => pooledBackwardModel(masked), small);
  const shape = [G, B, T, H, hd];
  const w = new Float32Array(B * T); // [1, B, 1, 1, T] 1/n at the valid queries
  for (let b = 0; b < B; b++) {
    let n = 0;
    for (let t = 0; t < T; t++) n += mask === undefined || mask[b * T + t] !== 0 ? 1 : 0;
    for (let t = 0; t < T; t++) w[b * T + t] = mask === undefined || mask[b * T + t] !== 0 ? 1 / n : 0;
  }
  const feeds: Record<string, ort.Tensor> = {
    Q: new ort.Tensor("float32", q.data as Float32Array, shape),
    K: new ort.Tensor("float32", k.data as Float32Array, shape),
    V: new ort.Tensor("float32", v.data as Float32Array, shape),
    W: new ort.Tensor("float32", w, [1, B, 1, 1, T]),
    Scale: new ort.Tensor("float32", Float32Array.of(1 / Math.sqrt(hd)), [1]),
  };
  if (mask !== undefined) {
    const bias = new Float32Array(G * B * H * T); // [G, B, H, 1, T]: the key's padding bias, for every group and head
    for (let g = 0; g < G; g++) for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
      const o = ((g * B + b) * H + h) * T;
      for (let t = 0; t < T; t++) bias[o + t] = mask[b * T + t] !== 0 ? 0 : -1e9;
    }
    feeds.Ones = new ort.Tensor("float32", new Float32Array(G * B * H * T).fill(1), [G, B, H, T, 1]);
    feeds.BiasRows = new ort.Tensor("float32", bias, [G, B, H, 1, T]);
  }
  const res = await timedRun(fwd, feeds, 2 * G * B * H * T * T * hd);
  const a = res["A"]; // [G, B, H, 1, T], kept for the backward pass
  return tape.custom([G * B, H * hd], res["O"].data as Float32Array, [q, k, v], async (dOut) => {
    const g = await timedRun(bwd, { ...feeds, dO: new ort.Tensor("float32", dOut as Float32Array, [G, B, H, 1, hd]), A: a }, 3 * G * B * H * T * T * hd);
    return [g["dQ"].data as Float32Array, g["dK"].data as Float32Array, g["dV"].data as Float32Array];
  });
}

/** The same attention from plain tape ops (permute, batched matmul, masked softmax). */
async function composite(tape: Tape, q: Tensor, k: Tensor, v: Tensor, dims: AttentionDims, scale: number, mask?: Uint8Array): Promise<Tensor> {
  const { G, B, T, H, hd } = dims;
  const heads = (x: Tensor) => tape.reshape(tape.permute(tape.reshape(x, [G, B, T, H, hd]), HEADS_FIRST), [G * B * H, T, hd]);
  const scores = tape.scale(await tape.matmul(heads(q), heads(k), { transB: true }), scale); // [G·B·H, T, T]
  const keyMask: RowMask | undefined = mask === undefined ? undefined : { mask, maskRows: B, rowsPerMask: H * T };
  const ctx = await tape.matmul(tape.softmax(scores, keyMask), heads(v)); // [G·B·H, T, hd]
  return tape.permute(tape.reshape(ctx, [G, B, H, T, hd]), HEADS_FIRST); // [G, B, T, H, hd]
}

