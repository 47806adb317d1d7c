// The ONNX builder: large initializers go to the external data file (page-aligned), small ones stay inline,
// files appear only complete (temp + rename), and ONNX Runtime loads the result by path and computes with it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import "../src/util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { OnnxModelBuilder, float } from "../src/onnx/proto.js";
import { tempDir } from "./helpers.js";

test("a MatMul + bias model with an external 64 KiB weight runs in ORT and matches plain arithmetic", async () => {
  const dir = tempDir("onnx");
  try {
    const K = 128;
    const N = 128;
    const w = Float32Array.from({ length: K * N }, (_, i) => Math.sin(i * 0.1)); // [K, N]
    const b = Float32Array.from({ length: N }, (_, i) => i / N); // [N]
    const path = join(dir, "model.onnx");
    const g = new OnnxModelBuilder(path);
    const x = g.input("x", "float32", ["rows", K]); // [rows, K]
    const y = g.op("Add", [g.op("MatMul", [x, g.initializer("w", "float32", [K, N], w)]), g.initializer("b", "float32", [N], b)]); // [rows, N]
    g.node("Mul", [y, g.constF32([2])], ["y"]); // [rows, N]
    g.node("SimplifiedLayerNormalization", ["y", g.constF32(new Array(N).fill(1))], ["z"], { axis: -1, epsilon: float(1e-6) });
    g.output("y", "float32", ["rows", N]);
    g.output("z", "float32", ["rows", N]);
    assert.deepEqual(readdirSync(dir).filter((n) => n === "model.onnx" || n === "model.onnx.data"), [], "nothing final before finish()");
    g.finish();
    assert.deepEqual(readdirSync(dir).sort(), ["model.onnx", "model.onnx.data"], "no temporary files left");
    assert.ok(statSync(path).size < 4096 + 2048, "the weight is not inline");
    assert.equal(statSync(path + ".data").size, K * N * 4, "one tensor at offset 0");

    const s = await ort.InferenceSession.create(path);
    const rows = 3;
    const xs = Float32Array.from({ length: rows * K }, (_, i) => Math.cos(i * 0.37)); // [rows, K]
    const out = await s.run({ x: new ort.Tensor("float32", xs, [rows, K]) });
    await s.release();
    let maxDiff = 0;
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      const want = new Float64Array(N); // [N]
      for (let n = 0; n < N; n++) {
        let acc = b[n];
        for (let k = 0; k < K; k++) acc += xs[r * K + k] * w[k * N + n];
        want[n] = 2 * acc;
        ss += want[n] * want[n];
      }
      const rms = Math.sqrt(ss / N + 1e-6);
      for (let n = 0; n < N; n++) {
        maxDiff = Math.max(maxDiff, Math.abs((out.y.data as Float32Array)[r * N + n] - want[n]));
        maxDiff = Math.max(maxDiff, Math.abs((out.z.data as Float32Array)[r * N + n] - want[n] / rms));
      }
    }
    assert.ok(maxDiff < 1e-3, `max diff ${maxDiff}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("abort() leaves no files behind; a wrong initializer size is a GraphError naming the tensor", () => {
  const dir = tempDir("onnx");
  try {
    const g = new OnnxModelBuilder(join(dir, "model.onnx"));
    assert.throws(() => g.initializer("bad", "float32", [4, 4], new Float32Array(15)), (e: Error & { field?: string }) => e.name === "GraphError" && e.field === "bad");
    g.abort();
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
