/**
 * Surgery on plain-op decoders as PyTorch/Optimum exports them: RMSNorm decomposed into
 * Pow → ReduceMean → Add → Sqrt → Div/Reciprocal → Mul (with the Casts torch inserts), or opset-23
 * RMSNormalization, and residual Adds. A tiny 2-layer graph is written here by hand; its taps, run in ORT,
 * must equal a float64 JS forward pass of the same weights.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import "../src/util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { OnnxModelBuilder, float } from "../src/onnx/proto.js";
import { tapOnnxFile } from "../src/graph/surgery.js";
import { GraphError } from "../src/errors.js";
import { f16ToF32, f32ToF16 } from "../src/numeric/half.js";
import { tempDir } from "./helpers.js";

const V = 16; // vocab
const D = 8; // width
const L = 2; // blocks
const EPS = 1e-5;

/** Deterministic weights in [-0.5, 0.5). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

interface Weights {
  embed: Float32Array; // [V, D]
  norms: Float32Array[]; // 2L + 1 of [D]: attn_norm, ffn_norm per block, then the final norm
  attn: Float32Array[]; // L of [D, D] (x·A, a token-local stand-in for attention)
  up: Float32Array[]; // L of [D, 2D]
  down: Float32Array[]; // L of [2D, D]
  head: Float32Array; // [D, V]
}

function makeWeights(): Weights {
  const r = lcg(7);
  const mat = (n: number, scale = 1) => Float32Array.from({ length: n }, () => r() * scale);
  return {
    embed: mat(V * D, 2),
    norms: Array.from({ length: 2 * L + 1 }, () => Float32Array.from({ length: D }, () => 1 + r())),
    attn: Array.from({ length: L }, () => mat(D * D)),
    up: Array.from({ length: L }, () => mat(D * 2 * D)),
    down: Array.from({ length: L }, () => mat(2 * D * D)),
    head: mat(D * V),
  };
}

// ---- float64 reference: rows of T tokens
function rms(x: Float64Array, w: Float32Array): Float64Array {
  const y = new Float64Array(x.length); // [T, D]
  for (let o = 0; o < x.length; o += D) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[o + i] ** 2;
    const s = Math.sqrt(ss / D + EPS);
    for (let i = 0; i < D; i++) y[o + i] = (x[o + i] / s) * w[i];
  }
  return y;
}
function matmul(x: Float64Array, w: Float32Array, inDim: number, outDim: number): Float64Array {
  const T = x.length / inDim;
  const y = new Float64Array(T * outDim); // [T, outDim]
  for (let t = 0; t < T; t++) for (let o = 0; o < outDim; o++) {
    let s = 0;
    for (let i = 0; i < inDim; i++) s += x[t * inDim + i] * w[i * outDim + o];
    y[t * outDim + o] = s;
  }
  return y;
}
const add = (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]);

function reference(w: Weights, tokens: number[]): { hidden: Float64Array[]; logits: Float64Array } {
  let x: Float64Array = new Float64Array(tokens.length * D); // [T, D]
  tokens.forEach((t, i) => x.set(w.embed.subarray(t * D, (t + 1) * D), i * D));
  const hidden = [x];
  for (let l = 0; l < L; l++) {
    x = add(x, matmul(rms(x, w.norms[2 * l]), w.attn[l], D, D));
    const u = matmul(rms(x, w.norms[2 * l + 1]), w.up[l], D, 2 * D).map((v) => v / (1 + Math.exp(-v))); // [T, 2D] silu
    x = add(x, matmul(u, w.down[l], 2 * D, D));
    hidden.push(x);
  }
  const final = rms(x, w.norms[2 * L]);
  hidden[L] = final;
  return { hidden, logits: matmul(final, w.head, D, V) };
}

/** "div-opset12": opset 12, where ReduceMean and Unsqueeze take axes as attributes. */
type NormForm = "div" | "div-opset12" | "cast-reciprocal" | "mul-square-div-one" | "rmsnorm23";

/** Writes the tiny decoder with every RMSNorm in the given form; no hidden-state output. */
/**
 * Writes the tiny decoder with every RMSNorm in the given form; no hidden-state output. `half`: float16 weights
 * and residual stream, norms computed in float32 between Casts (as torch exports fp16 models). `exposeTaps`:
 * also output the expected tap tensors (cast to float32) as tap_0 .. tap_L.
 */
function writeGraph(path: string, w: Weights, form: NormForm, { half = false, exposeTaps = false } = {}): void {
  const b = new OnnxModelBuilder(path, form === "rmsnorm23" ? 23 : form === "div-opset12" ? 12 : 21);
  const ids = b.input("input_ids", "int64", ["batch_size", "sequence_length"]); // [B, T]
  b.input("attention_mask", "int64", ["batch_size", "total_sequence_length"]); // [B, T] (unused, Optimum has it)
  const f32 = (name: string, dims: number[], data: Float32Array) =>
    half ? b.initializer(name, "float16", dims, Uint16Array.from(data, (v) => f32ToF16(v))) : b.initializer(name, "float32", dims, data);
  const expected: string[] = [];
  const norm = (x: string, weight: string): string => {
    if (form === "rmsnorm23") return b.op("RMSNormalization", [x, weight], { axis: -1, epsilon: float(EPS) }); // [B, T, D]
    const xc = form === "cast-reciprocal" ? b.op("Cast", [x], { to: 1 }) : x; // [B, T, D] float32
    const sq = form === "mul-square-div-one" ? b.op("Mul", [xc, xc]) : b.op("Pow", [xc, b.constF32([2], [])]); // [B, T, D]
    const mean = form === "div-opset12"
      ? b.op("ReduceMean", [sq], { axes: [-1], keepdims: 1 }) // [B, T, 1]
      : b.op("ReduceMean", [sq, b.constI64([-1])], { keepdims: 1 }); // [B, T, 1]
    const s = b.op("Sqrt", [b.op("Add", [mean, b.constF32([EPS], [])])]); // [B, T, 1]
    let y: string;
    if (form === "div" || form === "div-opset12") y = b.op("Div", [xc, s]); // [B, T, D]
    else if (form === "cast-reciprocal") y = b.op("Cast", [b.op("Mul", [xc, b.op("Reciprocal", [s])])], { to: half ? 10 : 1 }); // [B, T, D]
    else y = b.op("Mul", [xc, b.op("Div", [b.constF32([1], []), s])]); // [B, T, D]
    return form === "cast-reciprocal" ? b.op("Mul", [weight, y]) : b.op("Mul", [y, weight]); // [B, T, D]
  };
  let x = b.op("Gather", [f32("model.embed_tokens.weight", [V, D], w.embed), ids], { axis: 0 }); // [B, T, D]
  expected.push(x);
  for (let l = 0; l < L; l++) {
    const attn = b.op("MatMul", [norm(x, f32(`l${l}.input_layernorm`, [D], w.norms[2 * l])), f32(`l${l}.attn`, [D, D], w.attn[l])]); // [B, T, D]
    x = l % 2 === 0 ? b.op("Add", [x, attn]) : b.op("Add", [attn, x]); // [B, T, D] both operand orders occur in exports
    const up = b.op("MatMul", [norm(x, f32(`l${l}.post_attention_layernorm`, [D], w.norms[2 * l + 1])), f32(`l${l}.up`, [D, 2 * D], w.up[l])]); // [B, T, 2D]
    const act = b.op("Mul", [up, b.op("Sigmoid", [up])]); // [B, T, 2D]
    const down = b.op("MatMul", [act, f32(`l${l}.down`, [2 * D, D], w.down[l])]); // [B, T, D]
    x = b.op("Add", [x, down]); // [B, T, D]
    if (l + 1 < L) expected.push(x);
  }
  const final = norm(x, f32("model.norm.weight", [D], w.norms[2 * L])); // [B, T, D]
  expected.push(final);
  b.node("MatMul", [final, f32("lm_head", [D, V], w.head)], ["logits"]); // [B, T, V]
  b.output("logits", half ? "float16" : "float32", ["batch_size", "sequence_length", V]);
  if (exposeTaps) {
    expected.forEach((t, l) => {
      b.node("Cast", [t], [`tap_${l}`], { to: 1 }); // [B, T, D] float32
      b.output(`tap_${l}`, "float32", ["batch_size", "sequence_length", D]);
    });
  }
  b.finish();
}

for (const form of ["div", "div-opset12", "cast-reciprocal", "mul-square-div-one", "rmsnorm23"] as const) {
  test(`plain-op decoder (${form} RMSNorm): surgical taps equal a float64 reference`, async () => {
    const dir = tempDir("surgery-plain");
    try {
      const w = makeWeights();
      const path = join(dir, "model.onnx");
      writeGraph(path, w, form);
      const tapped = tapOnnxFile(path, undefined, { blocks: L, dim: D });
      assert.equal(tapped.stream.finalNorm, form === "rmsnorm23" ? "rms-normalization" : "plain-ops");
      assert.deepEqual(tapped.stream.stepKinds, ["add", "add", "add", "add"]);

      const tokens = [3, 0, 15, 7, 9];
      const T = tokens.length;
      const session = await ort.InferenceSession.create(tapped.path);
      const out = await session.run({
        input_ids: new ort.Tensor("int64", BigInt64Array.from(tokens.map(BigInt)), [1, T]), // [1, T]
        attention_mask: new ort.Tensor("int64", new BigInt64Array(T).fill(1n), [1, T]), // [1, T]
      });
      await session.release();
      const ref = reference(w, tokens);
      assert.deepEqual(out.hidden_states.dims, [L + 1, 1, T, D]);
      const h = out.hidden_states.data as Float32Array; // [L+1, 1, T, D]
      for (let l = 0; l <= L; l++) {
        for (let i = 0; i < T * D; i++) assert.ok(Math.abs(h[l * T * D + i] - ref.hidden[l][i]) <= 1e-5, `layer ${l} value ${i}`);
      }
      const logits = out.logits.data as Float32Array; // [1, T, V]
      for (let i = 0; i < T * V; i++) assert.ok(Math.abs(logits[i] - ref.logits[i]) <= 1e-5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("float16 plain-op decoder (Casts around float32 norms): taps are the right tensors, widened to float32", async () => {
  const dir = tempDir("surgery-plain");
  try {
    const w = makeWeights();
    const path = join(dir, "model.onnx");
    const exposed = join(dir, "exposed.onnx");
    writeGraph(path, w, "cast-reciprocal", { half: true });
    writeGraph(exposed, w, "cast-reciprocal", { half: true, exposeTaps: true });
    const tapped = tapOnnxFile(path, undefined, { blocks: L, dim: D });
    assert.equal(tapped.stream.embeddingElemType, 10); // FLOAT16
    const tokens = [1, 2, 14, 8];
    const T = tokens.length;
    const feeds = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(tokens.map(BigInt)), [1, T]), // [1, T]
      attention_mask: new ort.Tensor("int64", new BigInt64Array(T).fill(1n), [1, T]), // [1, T]
    };
    const s1 = await ort.InferenceSession.create(tapped.path);
    const s2 = await ort.InferenceSession.create(exposed);
    const a = await s1.run(feeds);
    const b = await s2.run(feeds);
    await s1.release();
    await s2.release();
    assert.equal(a.hidden_states.type, "float32");
    assert.deepEqual(a.hidden_states.dims, [L + 1, 1, T, D]);
    const h = a.hidden_states.data as Float32Array; // [L+1, 1, T, D]
    const ref = reference(w, tokens);
    for (let l = 0; l <= L; l++) {
      const exact = b[`tap_${l}`].data as Float32Array; // [1, T, D]
      for (let i = 0; i < T * D; i++) {
        assert.equal(h[l * T * D + i], exact[i], `layer ${l} value ${i}`);
        // and close to the float64 reference, to float16 precision
        assert.ok(Math.abs(h[l * T * D + i] - ref.hidden[l][i]) <= 2e-2 * (1 + Math.abs(ref.hidden[l][i])), `layer ${l} value ${i} vs reference`);
      }
    }
    const logits = a.logits.data as Uint16Array; // [1, T, V] float16
    for (let i = 0; i < T * V; i++) assert.ok(Math.abs(f16ToF32(logits[i]) - ref.logits[i]) <= 3e-2 * (1 + Math.abs(ref.logits[i])));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("plain-op decoder whose final norm is not an RMSNorm fails with a GraphError", () => {
  const dir = tempDir("surgery-plain");
  try {
    const path = join(dir, "model.onnx");
    const b = new OnnxModelBuilder(path);
    const ids = b.input("input_ids", "int64", [1, "T"]); // [1, T]
    const x = b.op("Gather", [b.constF32(Array.from({ length: V * D }, (_, i) => i / 100), [V, D]), ids], { axis: 0 }); // [1, T, D]
    const h = b.op("Add", [x, b.op("Relu", [x])]); // [1, T, D]
    const h2 = b.op("Add", [h, b.op("Tanh", [h])]); // [1, T, D]
    b.node("Sigmoid", [h2], ["logits"]); // [1, T, D] (no norm before the head)
    b.output("logits", "float32", [1, "T", D]);
    b.finish();
    assert.throws(
      () => tapOnnxFile(path),
      (e: unknown) => e instanceof GraphError && e.file === path && /no final RMSNorm/.test(e.message),
    );
    assert.ok(readFileSync(path).length > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
