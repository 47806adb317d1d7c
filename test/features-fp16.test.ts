import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeF16, encodeF16, f16BitsToF32, f32ToF16Bits } from "../src/data/fp16.js";

// Published binary16 encodings (IEEE 754-2008 binary16; the worked examples on Wikipedia's
// "Half-precision floating-point format" page) and hand-derived rounding ties.
const KNOWN: [number, number][] = [
  [0, 0x0000],
  [-0, 0x8000],
  [1, 0x3c00],
  [1.0009765625, 0x3c01],
  [0.99951171875, 0x3bff],
  [-2, 0xc000],
  [1.5, 0x3e00],
  [65504, 0x7bff],
  [2 ** -14, 0x0400], // smallest normal
  [1023 * 2 ** -24, 0x03ff], // largest subnormal
  [2 ** -24, 0x0001], // smallest subnormal
  [1 / 3, 0x3555],
  [0.1, 0x2e66],
  [Infinity, 0x7c00],
  [-Infinity, 0xfc00],
  // Ties round to even.
  [1 + 2 ** -11, 0x3c00],
  [1 + 3 * 2 ** -11, 0x3c02],
  [2049, 0x6800],
  [2051, 0x6802],
  [2 ** -25, 0x0000], // halfway between 0 and the smallest subnormal
  [-(2 ** -25), 0x8000],
  [3 * 2 ** -25, 0x0002],
  [1023.5 * 2 ** -24, 0x0400], // rounds up out of the subnormals
  [65519, 0x7bff],
  [65520, 0x7c00], // halfway to 2^16: even → overflow to Infinity
  [1e10, 0x7c00],
  [1e-10, 0x0000],
];

test("fp16: known bit patterns, subnormals, infinities and ties", () => {
  for (const [x, bits] of KNOWN) {
    assert.equal(f32ToF16Bits(x), bits, `encode ${x}: got 0x${f32ToF16Bits(x).toString(16)}, want 0x${bits.toString(16)}`);
  }
  // Slightly above a tie goes up.
  assert.equal(f32ToF16Bits(2 ** -25 * (1 + 2 ** -20)), 0x0001);
  assert.equal(f32ToF16Bits(1 + 2 ** -11 + 2 ** -20), 0x3c01);
  // Exactly representable values decode back to themselves.
  for (const [x, bits] of KNOWN.slice(0, 11)) assert.ok(Object.is(f16BitsToF32(bits), x), `decode 0x${bits.toString(16)}`);
  assert.equal(f16BitsToF32(0x7c00), Infinity);
  assert.equal(f16BitsToF32(0xfc00), -Infinity);
  assert.equal(f16BitsToF32(0x3555), 0.333251953125);
  assert.equal(f16BitsToF32(0x2e66), 0.0999755859375);
  assert.equal(f16BitsToF32(0x7bff), 65504);
  assert.equal(f16BitsToF32(0x0001), 2 ** -24);
  assert.equal(f16BitsToF32(0x8000), -0);
  assert.ok(Object.is(f16BitsToF32(0x8000), -0));
  assert.ok(Number.isNaN(f16BitsToF32(0x7e00)));
  assert.ok(Number.isNaN(f16BitsToF32(0xfc01)));
  const nanBits = f32ToF16Bits(NaN);
  assert.equal(nanBits & 0x7c00, 0x7c00);
  assert.notEqual(nanBits & 0x3ff, 0);
});

test("fp16: every half survives half → float → half; bulk decode equals scalar decode", () => {
  const all = new Uint16Array(65536); // [65536]
  for (let h = 0; h < 65536; h++) all[h] = h;
  const f = decodeF16(all);
  for (let h = 0; h < 65536; h++) {
    const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN) {
      assert.ok(Number.isNaN(f[h]));
      continue;
    }
    assert.ok(Object.is(f[h], f16BitsToF32(h)), `bits 0x${h.toString(16)}`);
    assert.equal(f32ToF16Bits(f[h]), h, `bits 0x${h.toString(16)}`);
  }
  const back = encodeF16(f);
  for (let h = 0; h < 65536; h++) if (!Number.isNaN(f[h])) assert.equal(back[h], h);
});

test("fp16: result is the nearest half (ties to even) for random floats — checked against both neighbours", () => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const x = new Float32Array(200_000); // [n]
  for (let i = 0; i < x.length; i++) x[i] = (rand() - 0.5) * 2 ** (Math.floor(rand() * 44) - 28);
  const h = encodeF16(x);
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    const bits = h[i];
    const mag = bits & 0x7fff;
    const v = f16BitsToF32(bits);
    if (Math.abs(xi) >= 65520) {
      assert.equal(mag, 0x7c00);
      continue;
    }
    const err = Math.abs(xi - v);
    const sign = bits & 0x8000;
    for (const nb of [mag - 1, mag + 1]) {
      if (nb < 0 || nb > 0x7bff) continue;
      const other = Math.abs(xi - f16BitsToF32(sign | nb));
      assert.ok(err <= other, `x=${xi}: chose 0x${bits.toString(16)} (err ${err}) but 0x${(sign | nb).toString(16)} is nearer (${other})`);
      if (err === other) assert.equal(mag & 1, 0, `x=${xi}: tie not broken to even`);
    }
    // Round-trip error bound: half an ulp.
    const bound = Math.abs(xi) >= 2 ** -14 ? Math.abs(xi) * 2 ** -11 : 2 ** -25;
    assert.ok(err <= bound, `x=${xi}: error ${err} > ${bound}`);
  }
});
