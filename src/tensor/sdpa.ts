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
import { GraphError } from "../errors.js";
import type { RowMask, Tape, Tensor } from "./autograd.js";
import { kernelStats, ORT_MULTITHREAD_MACS, probeThreads } from "./kernel.js";

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

const sessions = new Map<boolean, Promise<[ort.InferenceSession, ort.InferenceSession]>>();
/** Forward and backward sessions; `small` ones run single-threaded (see ORT_MULTITHREAD_MACS). */
function getSessions(small: boolean): Promise<[ort.InferenceSession, ort.InferenceSession]> {
  let s = sessions.get(small);
  if (s === undefined) {
    s = Promise.all([forwardModel(), backwardModel()].map((m) => ort.InferenceSession.create(m, { graphOptimizationLevel: "all", ...probeThreads(small) }))).catch((err: unknown) => {
      sessions.delete(small);
      throw new GraphError(`cannot create the fused attention sessions: ${String(err)}`, { field: "sdpa" }, { cause: err });
    }) as Promise<[ort.InferenceSession, ort.InferenceSession]>;
    sessions.set(small, s);
  }
  return s;
}

/** Attention over [G, B, T, H, hd] inputs → [G, B, T, H, hd]; `mask` [B, T] marks real keys (undefined: all). */
export async function attention(tape: Tape, q: Tensor, k: Tensor, v: Tensor, dims: AttentionDims, mask?: Uint8Array): Promise<Tensor> {
  const { G, B, T, H, hd } = dims;
  const scale = 1 / Math.sqrt(hd);
  if (tape.dtype === "f64" || !fusedEnabled || G * B * H * T * T < FUSED_MIN_SCORES) return composite(tape, q, k, v, dims, scale, mask);
  const [fwd, bwd] = await getSessions(G * B * H * T * T * hd < ORT_MULTITHREAD_MACS);
  const shape = [G, B, T, H, hd];
  const bias = new Float32Array(B * T); // [1, B, 1, 1, T]
  if (mask !== undefined) for (let i = 0; i < B * T; i++) bias[i] = mask[i] !== 0 ? 0 : -1e9;
  const scaleT = new ort.Tensor("float32", Float32Array.of(scale), [1]);
  const t0 = performance.now();
  const res = await fwd.run({
    Q: new ort.Tensor("float32", q.data as Float32Array, shape),
    K: new ort.Tensor("float32", k.data as Float32Array, shape),
    V: new ort.Tensor("float32", v.data as Float32Array, shape),
    Bias: new ort.Tensor("float32", bias, [1, B, 1, 1, T]),
    Scale: scaleT,
  });
  kernelStats.ortMs += performance.now() - t0;
  kernelStats.ortMacs += 2 * G * B * H * T * T * hd;
  kernelStats.ortCalls++;
  const p = res["P"].data as Float32Array; // [G, B, H, T, T], kept for the backward pass
  return tape.custom(shape, res["O"].data as Float32Array, [q, k, v], async (dOut) => {
    const t1 = performance.now();
    const g = await bwd.run({
      dO: new ort.Tensor("float32", dOut as Float32Array, shape),
      P: new ort.Tensor("float32", p, [G, B, H, T, T]),
      Q: new ort.Tensor("float32", q.data as Float32Array, shape),
      K: new ort.Tensor("float32", k.data as Float32Array, shape),
      V: new ort.Tensor("float32", v.data as Float32Array, shape),
      Scale: scaleT,
    });
    kernelStats.ortMs += performance.now() - t1;
    kernelStats.ortMacs += 4 * G * B * H * T * T * hd;
    kernelStats.ortCalls++;
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

