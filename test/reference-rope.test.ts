// RoPE frequencies, including Llama 3.1's frequency scaling, against the published Llama 3.1 8B settings
// (rope_theta 500000, factor 8, low_freq_factor 1, high_freq_factor 4, original context 8192, head_dim 128):
// wavelengths shorter than 8192/4 = 2048 positions keep their frequency, those longer than 8192 are divided by
// the factor, and the band between is interpolated (continuously at both edges).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ropeCaches, ropeInverseFrequencies } from "../src/graph/rope.js";
import type { ModelSpec } from "../src/model/spec.js";

const base: ModelSpec = {
  architecture: "llama", blocks: 1, dim: 4096, ffnDim: 14336, heads: 32, kvHeads: 8, headDim: 128, vocabSize: 128256,
  contextLength: 131072, rmsNormEps: 1e-5, ropeTheta: 500000, ropeDim: 128, ropeStyle: "half", qkvBias: false,
  qkNorm: false, tiedEmbeddings: false, eosTokenIds: [],
};
const scaled: ModelSpec = { ...base, ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 8192 } };

test("unscaled inverse frequencies are theta^(-2i/d)", () => {
  const inv = ropeInverseFrequencies(base);
  assert.equal(inv.length, 64);
  assert.equal(inv[0], 1);
  assert.ok(Math.abs(inv[32] - 1 / Math.sqrt(500000)) < 1e-15);
});

test("llama3 scaling keeps high frequencies, divides low ones by 8, interpolates between", () => {
  const inv = ropeInverseFrequencies(base);
  const sc = ropeInverseFrequencies(scaled);
  let kept = 0;
  let divided = 0;
  let mixed = 0;
  for (let i = 0; i < inv.length; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    if (wavelen < 2048) {
      assert.equal(sc[i], inv[i]);
      kept++;
    } else if (wavelen > 8192) {
      assert.ok(Math.abs(sc[i] - inv[i] / 8) < 1e-18);
      divided++;
    } else {
      assert.ok(sc[i] < inv[i] && sc[i] > inv[i] / 8, `index ${i} interpolated`);
      mixed++;
    }
  }
  assert.ok(kept > 0 && divided > 0 && mixed > 0, `${kept}/${mixed}/${divided}`);
  // the scaled frequencies still decrease monotonically
  for (let i = 1; i < sc.length; i++) assert.ok(sc[i] < sc[i - 1]);
});

test("cos/sin caches hold cos(p·θ_i), sin(p·θ_i)", () => {
  const { cos, sin } = ropeCaches(base, 3);
  const inv = ropeInverseFrequencies(base);
  assert.equal(cos.length, 3 * 64);
  assert.equal(cos[0], 1);
  assert.equal(sin[0], 0);
  assert.ok(Math.abs(cos[2 * 64 + 5] - Math.cos(2 * inv[5])) < 1e-7);
  assert.ok(Math.abs(sin[2 * 64 + 5] - Math.sin(2 * inv[5])) < 1e-7);
});
