/**
 * Probe training throughput on synthetic cached features shaped like Qwen2.5-0.5B (d = 896, L = 24, T ≈ 64),
 * and the GFLOP/s the MHA probe's matrix work reaches against this machine's ORT MatMul peak (same run).
 * Usage: npm run bench:probes [-- --examples N --batch B]
 */
import "../src/util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { HiddenStates } from "../src/types/hidden.js";
import { gemm, kernelStats, setForceJsKernel } from "../src/tensor/kernel.js";
import { setFusedAttention } from "../src/tensor/sdpa.js";
import { Rng } from "../src/numeric/rng.js";
import { arraySource, trainProbe } from "../src/probe/train.js";
import { Probe, type ProbeConfig } from "../src/probe/probe.js";
import { Tape } from "../src/tensor/autograd.js";
import { makeBatch } from "../src/tensor/batch.js";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const L1 = 25, D = 896, N = arg("examples", 64), BATCH = arg("batch", 32);
const rng = new Rng(42);

function synthetic(n: number): HiddenStates[] {
  return Array.from({ length: n }, () => {
    const T = 56 + rng.int(17); // 56..72, mean 64
    const data = new Float32Array(L1 * T * D); // [L+1, T, d]
    for (let i = 0; i < data.length; i++) data[i] = rng.next() * 2 - 1;
    return new HiddenStates(L1, T, D, data);
  });
}

async function matmulPeak(): Promise<number> {
  const m = 512, k = 2048, n = 2048;
  const a = Float32Array.from({ length: m * k }, () => rng.next());
  const b = Float32Array.from({ length: k * n }, () => rng.next());
  const s = { groups: 1, groupsB: 1, m, k, n };
  await gemm(s, a, b);
  let best = 0;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    await gemm(s, a, b);
    best = Math.max(best, (2 * m * k * n) / ((performance.now() - t0) / 1000) / 1e9);
  }
  return best;
}

async function main(): Promise<void> {
  console.log(`onnxruntime-node ${ort.env.versions.common}; synthetic features: N=${N}, L+1=${L1}, d=${D}, T≈64, batch ${BATCH}`);
  const peak = await matmulPeak();
  console.log(`ORT MatMul peak [512×2048]·[2048×2048]: ${peak.toFixed(1)} GFLOP/s`);
  const hs = synthetic(N);
  const labels = hs.map((_, i) => i % 2);
  const train = arraySource(hs, labels);
  const val = arraySource(hs.slice(0, 8), labels.slice(0, 8));
  const kinds: [string, ProbeConfig][] = [
    ["pooling mean", { kind: "pooling", pool: "mean" }],
    ["fixed last", { kind: "fixed" }],
    ["scoring", { kind: "scoring" }],
    ["mha f=8 H=8", { kind: "mha", heads: 8, downcast: 8 }],
    ["mha f=32 H=4", { kind: "mha", heads: 4, downcast: 32 }],
  ];
  console.log("probe          params     train ex/s   matrix GFLOP/s (wall)   (in ORT)   share of peak");
  for (const [name, config] of kinds) {
    Object.assign(kernelStats, { ortMacs: 0, ortCalls: 0, ortMs: 0, jsMacs: 0, jsCalls: 0 });
    const r = await trainProbe(config, train, { epochs: 1, batchSize: BATCH, validation: val, seed: 1 });
    const wallS = N / r.examplesPerSecond;
    const flops = 2 * (kernelStats.ortMacs + kernelStats.jsMacs);
    const gWall = flops / wallS / 1e9, gOrt = (2 * kernelStats.ortMacs) / (kernelStats.ortMs / 1000) / 1e9;
    console.log(
      `${name.padEnd(14)} ${String(r.probe.parameterCount()).padStart(9)} ${r.examplesPerSecond.toFixed(1).padStart(12)} ${gWall.toFixed(1).padStart(16)} ${gOrt.toFixed(1).padStart(16)} ${((100 * gWall) / peak).toFixed(1).padStart(10)}%`,
    );
  }
  console.log("(pooling/fixed have no aggregator parameters: their per-prompt vectors are computed once, so ex/s counts head training only)");
  // Single-prompt inference latency (probes run inside generation).
  for (const [name, config] of kinds) {
    const p = new Probe(config, { layers: L1, dim: D, classes: 2 });
    await p.predict(hs[0]);
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) await p.predict(hs[i]);
    console.log(`predict() one prompt (T≈64), ${name}: ${((performance.now() - t0) / 5).toFixed(2)} ms`);
  }
  // Same MHA training step with every product in JS loops and no fused attention, side by side (batch 4).
  const small = makeBatch(hs.slice(0, 4));
  const probe = new Probe({ kind: "mha", heads: 8, downcast: 8 }, { layers: L1, dim: D, classes: 2 });
  const step = async () => {
    const tape = new Tape("f32");
    const { logits } = await probe.forward(tape, small);
    await tape.backward(tape.crossEntropy(logits, [0, 1, 0, 1]));
  };
  await step();
  let t0 = performance.now();
  await step();
  const ortMs = performance.now() - t0;
  setForceJsKernel(true);
  setFusedAttention(false);
  t0 = performance.now();
  await step();
  const jsMs = performance.now() - t0;
  setForceJsKernel(false);
  setFusedAttention(true);
  console.log(`mha f=8 train step, batch 4: ORT kernels ${ortMs.toFixed(0)} ms vs JS loops ${jsMs.toFixed(0)} ms (×${(jsMs / ortMs).toFixed(1)})`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
