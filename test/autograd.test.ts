import { test } from "node:test";
import assert from "node:assert/strict";
import { Tape, Tensor } from "../src/tensor/autograd.js";
import { gemm, gemmJs, kernelStats } from "../src/tensor/kernel.js";
import { Rng } from "../src/numeric/rng.js";
import { Probe, type ProbeConfig } from "../src/probe/probe.js";
import { makeBatch } from "../src/tensor/batch.js";
import { HiddenStates } from "../src/types/hidden.js";

const rng = new Rng(1234);

function randTensor(shape: number[], requiresGrad = true, scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return new Tensor(shape, Float64Array.from({ length: n }, () => rng.normal() * scale), requiresGrad);
}

/**
 * Central finite differences vs the tape's gradient for every element of every input (float64).
 * The loss is Σ R ⊙ f(inputs) with a fixed random R, so every output element matters.
 */
async function gradCheck(name: string, inputs: Tensor[], f: (tape: Tape) => Promise<Tensor> | Tensor, eps = 1e-6): Promise<void> {
  let weights: Float64Array | null = null;
  const lossOf = async (record: boolean): Promise<{ loss: Tensor; tape: Tape }> => {
    const tape = new Tape("f64", record);
    const out = await f(tape);
    if (weights === null) weights = Float64Array.from({ length: out.size }, () => rng.normal());
    const loss = tape.sum(tape.mul(out, tape.constant(out.shape, weights)));
    return { loss, tape };
  };
  for (const x of inputs) x.grad = null;
  const { loss, tape } = await lossOf(true);
  await tape.backward(loss);
  let worst = 0;
  for (const [k, x] of inputs.entries()) {
    assert.ok(x.grad !== null, `${name}: input ${k} got no gradient`);
    for (let i = 0; i < x.size; i++) {
      const keep = x.data[i];
      x.data[i] = keep + eps;
      const up = (await lossOf(false)).loss.data[0];
      x.data[i] = keep - eps;
      const down = (await lossOf(false)).loss.data[0];
      x.data[i] = keep;
      const numeric = (up - down) / (2 * eps);
      const analytic = x.grad![i];
      const rel = Math.abs(numeric - analytic) / Math.max(Math.abs(numeric) + Math.abs(analytic), 1e-6);
      worst = Math.max(worst, rel);
      assert.ok(rel < 1e-3, `${name}: input ${k}[${i}] analytic ${analytic} vs numeric ${numeric} (rel ${rel})`);
    }
  }
  assert.ok(worst < 1e-3);
}

test("matmul gradients (2-D, batched, broadcast B, transposed B)", async () => {
  const a2 = randTensor([3, 4]), b2 = randTensor([4, 5]);
  await gradCheck("matmul2d", [a2, b2], (t) => t.matmul(a2, b2));
  const a3 = randTensor([2, 3, 4]), b3 = randTensor([2, 4, 5]);
  await gradCheck("bmm", [a3, b3], (t) => t.matmul(a3, b3));
  const bb = randTensor([4, 5]);
  await gradCheck("bmm-broadcast", [a3, bb], (t) => t.matmul(a3, bb));
  const bt = randTensor([2, 5, 4]);
  await gradCheck("bmm-transB", [a3, bt], (t) => t.matmul(a3, bt, { transB: true }));
  const btb = randTensor([5, 4]);
  await gradCheck("bmm-transB-broadcast", [a3, btb], (t) => t.matmul(a3, btb, { transB: true }));
});

test("elementwise, bias, reshape/permute gradients", async () => {
  const a = randTensor([2, 3, 4]), bias = randTensor([4]);
  await gradCheck("add-bias", [a, bias], (t) => t.add(a, bias));
  await gradCheck("tanh", [a], (t) => t.tanh(a));
  await gradCheck("exp", [a], (t) => t.exp(t.scale(a, 0.5)));
  const b = randTensor([2, 3, 4]);
  await gradCheck("mul", [a, b], (t) => t.mul(a, b));
  const p = randTensor([2, 3, 4, 5]);
  await gradCheck("permute", [p], (t) => t.permute(t.reshape(p, [2, 3, 4, 5]), [0, 2, 1, 3]));
  await gradCheck("permute-3", [p], (t) => t.permute(p, [3, 1, 0, 2]));
});

test("masked softmax and masked mean/max pooling gradients", async () => {
  const mask = Uint8Array.from([1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0]); // [3, 4]
  const s = randTensor([2, 3, 4]);
  await gradCheck("softmax-masked", [s], (t) => t.softmax(s, { mask, maskRows: 3, rowsPerMask: 1 }));
  await gradCheck("softmax", [s], (t) => t.softmax(s));
  const x = randTensor([6, 4, 5]); // [G, T, d], group g uses mask row g % 3
  await gradCheck("pool-mean", [x], (t) => t.pool(x, "mean", { mask, maskRows: 3, rowsPerMask: 1 }));
  await gradCheck("pool-max", [x], (t) => t.pool(x, "max", { mask, maskRows: 3, rowsPerMask: 1 }));
  // masked entries get exactly zero probability and zero gradient
  const tape = new Tape("f64");
  const y = tape.softmax(s, { mask, maskRows: 3, rowsPerMask: 1 });
  assert.equal(y.data[3], 0);
  assert.ok(Math.abs(y.data[0] + y.data[1] + y.data[2] - 1) < 1e-12);
});

test("scaled dot-product attention and cross-entropy (weighted) gradients", async () => {
  const q = randTensor([4, 3, 2]), k = randTensor([4, 3, 2]), v = randTensor([4, 3, 2]);
  const mask = Uint8Array.from([1, 1, 0, 1, 1, 1]); // [2, 3]: rows of group g use batch floor(g/(2·3)) % 2
  await gradCheck("sdpa", [q, k, v], async (t) => {
    const sc = t.scale(await t.matmul(q, k, { transB: true }), 1 / Math.sqrt(2));
    const p = t.softmax(sc, { mask, maskRows: 2, rowsPerMask: 6 });
    return t.matmul(p, v);
  });
  const logits = randTensor([5, 3]);
  const labels = [0, 2, 1, 2, 0];
  await gradCheck("ce", [logits], (t) => t.crossEntropy(logits, labels));
  await gradCheck("ce-weighted", [logits], (t) => t.crossEntropy(logits, labels, [0.5, 2, 1]));
  // value: hand-computed for one row
  const tape = new Tape("f64");
  const ce = tape.crossEntropy(tape.constant([1, 2], Float64Array.from([0, Math.log(3)])), [1]);
  assert.ok(Math.abs(ce.data[0] - -Math.log(0.75)) < 1e-12);
});

function randomHidden(layers: number, tokens: number, dim: number): HiddenStates {
  return new HiddenStates(layers, tokens, dim, Float32Array.from({ length: layers * tokens * dim }, () => rng.normal()));
}

for (const config of [
  { kind: "scoring" },
  { kind: "mha", heads: 2, downcast: 2, pool: "mean" },
  { kind: "mha", heads: 2, downcast: 2, pool: "max" },
  { kind: "pooling", pool: "mean" },
  { kind: "pooling", pool: "max" },
  { kind: "fixed", layer: 1, token: "mean" },
] as ProbeConfig[]) {
  test(`aggregator gradients: ${JSON.stringify(config)} on padded batch`, async () => {
    const probe = new Probe(config, { layers: 3, dim: 8, classes: 3 }, { seed: 5, dtype: "f64" });
    const params = [...probe.params().values()];
    for (const p of params) for (let i = 0; i < p.size; i++) p.data[i] = rng.normal() * 0.5;
    const batch = makeBatch([randomHidden(3, 4, 8), randomHidden(3, 2, 8), randomHidden(3, 3, 8)], "f64");
    await gradCheck(`probe ${config.kind}`, params, async (t) => (await probe.forward(t, batch)).logits);
  });
}

test("ORT MatMul kernel equals the JS loops (all transpose/broadcast variants)", async () => {
  for (const [transA, transB, groupsB] of [[false, false, 3], [false, true, 1], [true, false, 3], [true, true, 1]] as const) {
    const s = { groups: 3, groupsB, m: 64, k: 64, n: 48, transA, transB };
    const a = Float32Array.from({ length: 3 * 64 * 64 }, () => rng.normal());
    const b = Float32Array.from({ length: groupsB * 64 * 48 }, () => rng.normal());
    const before = kernelStats.ortCalls;
    const c = await gemm(s, a, b);
    assert.equal(kernelStats.ortCalls, before + 1, "large float32 product should go through ORT");
    const r = gemmJs(s, Float64Array.from(a), Float64Array.from(b), new Float64Array(3 * 64 * 48));
    for (let i = 0; i < c.length; i++) assert.ok(Math.abs(c[i] - r[i]) < 1e-3 * (1 + Math.abs(r[i])), `${transA}${transB} [${i}]`);
  }
});

test("fused ORT attention equals the composite tape ops (values and gradients, with padding)", async () => {
  const { attention, setFusedAttention } = await import("../src/tensor/sdpa.js");
  const dims = { G: 4, B: 4, T: 24, H: 2, hd: 8 }; // G·B·H·T·T = 18,432 ≥ the fused threshold
  const n = dims.G * dims.B * dims.T * dims.H * dims.hd;
  const mk = () => new Tensor([dims.G, dims.B, dims.T, dims.H, dims.hd], Float32Array.from({ length: n }, () => rng.normal()), true);
  const mask = new Uint8Array(dims.B * dims.T).fill(1);
  mask.fill(0, 0 * 24 + 5, 24); // prompt 0 has 5 tokens
  mask.fill(0, 2 * 24 + 9, 3 * 24); // prompt 2 has 9
  const R = Float32Array.from({ length: n }, () => rng.normal());
  const run = async (fused: boolean) => {
    setFusedAttention(fused);
    const q = mk(), k = mk(), v = mk();
    const fresh = [q, k, v].map((t, i) => { t.data.set(inputs[i]); return t; });
    const tape = new Tape("f32");
    const o = await attention(tape, fresh[0], fresh[1], fresh[2], { ...dims }, mask);
    await tape.backward(tape.sum(tape.mul(o, tape.constant(o.shape, R))));
    setFusedAttention(true);
    return [o.data, ...fresh.map((t) => t.grad!)];
  };
  const inputs = [0, 1, 2].map(() => Float32Array.from({ length: n }, () => rng.normal()));
  const before = kernelStats.ortCalls;
  const fused = await run(true);
  assert.equal(kernelStats.ortCalls, before + 2, "forward + backward through the fused kernel");
  const plain = await run(false);
  for (let j = 0; j < 4; j++) {
    for (let i = 0; i < n; i++) assert.ok(Math.abs(fused[j][i] - plain[j][i]) < 1e-4 * (1 + Math.abs(plain[j][i])), `output ${j} [${i}]: ${fused[j][i]} vs ${plain[j][i]}`);
  }
});

test("fused pooled attention equals attention then a masked mean over queries (values and gradients, with and without padding)", async () => {
  const { pooledAttention, setFusedAttention } = await import("../src/tensor/sdpa.js");
  for (const [dims, padded] of [[{ G: 3, B: 4, T: 24, H: 4, hd: 2 }, true], [{ G: 2, B: 3, T: 20, H: 8, hd: 1 }, false]] as const) {
    const n = dims.G * dims.B * dims.T * dims.H * dims.hd;
    const mask = padded ? new Uint8Array(dims.B * dims.T).fill(1) : undefined;
    mask?.fill(0, 0 * dims.T + 5, dims.T); // prompt 0 has 5 tokens
    mask?.fill(0, 2 * dims.T + 1, 3 * dims.T); // prompt 2 has 1
    const inputs = [0, 1, 2].map(() => Float32Array.from({ length: n }, () => rng.normal()));
    const R = Float32Array.from({ length: dims.G * dims.B * dims.H * dims.hd }, () => rng.normal()); // [G·B, H·hd]
    const run = async (fused: boolean) => {
      setFusedAttention(fused);
      const [q, k, v] = inputs.map((d) => new Tensor([dims.G, dims.B * dims.T, dims.H * dims.hd], Float32Array.from(d), true));
      const tape = new Tape("f32");
      const o = await pooledAttention(tape, q, k, v, { ...dims }, mask); // [G·B, H·hd]
      await tape.backward(tape.sum(tape.mul(o, tape.constant(o.shape, R))));
      setFusedAttention(true);
      assert.deepEqual(o.shape, [dims.G * dims.B, dims.H * dims.hd]);
      return [o.data, q.grad!, k.grad!, v.grad!];
    };
    const before = kernelStats.ortCalls;
    const fused = await run(true);
    assert.equal(kernelStats.ortCalls, before + 2, "forward + backward through the fused pooled kernel");
    const plain = await run(false);
    for (let j = 0; j < 4; j++) {
      let norm = 0;
      for (let i = 0; i < plain[j].length; i++) norm = Math.max(norm, Math.abs(plain[j][i]));
      assert.ok(norm > 1e-3, `output ${j} is not trivially zero`);
      for (let i = 0; i < plain[j].length; i++) assert.ok(Math.abs(fused[j][i] - plain[j][i]) < 1e-4 * (1 + Math.abs(plain[j][i])), `${padded ? "padded" : "dense"} output ${j} [${i}]: ${fused[j][i]} vs ${plain[j][i]}`);
    }
  }
});

test("MHA mean pooling before the output projection equals pooling after it (the paper's order)", async () => {
  const probe = new Probe({ kind: "mha", heads: 2, downcast: 2, pool: "mean" }, { layers: 3, dim: 8, classes: 2 }, { seed: 3, dtype: "f64" });
  const batch = makeBatch([randomHidden(3, 4, 8), randomHidden(3, 2, 8)], "f64");
  const tape = new Tape("f64", false);
  const fast = (await probe.forward(tape, batch)).v; // [B, d]
  // Reference: projection back to d for every token, then masked mean, in both stages.
  const { attention } = await import("../src/tensor/sdpa.js");
  const agg = probe.aggregator as import("../src/probe/aggregators/mha.js").MhaAggregator;
  const block = async (x: Tensor, w: typeof agg.tokenBlock, G: number, B: number, T: number, mask?: Uint8Array) => {
    const q = await tape.matmul(x, w.q), k = await tape.matmul(x, w.k), v = await tape.matmul(x, w.v);
    const ctx = await attention(tape, q, k, v, { G, B, T, H: 2, hd: 2 }, mask);
    const out = await tape.matmul(tape.reshape(ctx, [G, B * T, 4]), w.o);
    return tape.pool(tape.reshape(out, [G * B, T, 8]), "mean", mask && { mask, maskRows: B, rowsPerMask: 1 });
  };
  const x = tape.reshape(tape.constant([3, 2, 4, 8], batch.x), [3, 2 * 4, 8]);
  const s1 = await block(x, agg.tokenBlock, 3, 2, 4, batch.mask);
  const byPrompt = tape.permute(tape.reshape(s1, [3, 2, 8]), [1, 0, 2]);
  const ref = await block(tape.reshape(byPrompt, [1, 2 * 3, 8]), agg.layerBlock, 1, 2, 3);
  for (let i = 0; i < ref.size; i++) assert.ok(Math.abs(fast.data[i] - ref.data[i]) < 1e-12, `[${i}] ${fast.data[i]} vs ${ref.data[i]}`);
});
