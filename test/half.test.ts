import { test } from "node:test";
import assert from "node:assert/strict";
import { bf16ToF32, decodeBf16, decodeF16, encodeBf16, encodeF16, f16ToF32, f32ToBf16, f32ToF16 } from "../src/numeric/half.js";

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
  [0.5, 0x3800],
  [3.140625, 0x4248],
  [65519, 0x7bff],
  [65520, 0x7c00], // halfway to 2^16: even → overflow to Infinity
  [1e10, 0x7c00],
  [1e-10, 0x0000],
];

test("f16: known bit patterns, subnormals, infinities and ties", () => {
  for (const [x, bits] of KNOWN) {
    assert.equal(f32ToF16(x), bits, `encode ${x}: got 0x${f32ToF16(x).toString(16)}, want 0x${bits.toString(16)}`);
  }
  // Slightly above a tie goes up.
  assert.equal(f32ToF16(2 ** -25 * (1 + 2 ** -20)), 0x0001);
  assert.equal(f32ToF16(1 + 2 ** -11 + 2 ** -20), 0x3c01);
  // Exactly representable values decode back to themselves.
  for (const [x, bits] of KNOWN.slice(0, 11)) assert.ok(Object.is(f16ToF32(bits), x), `decode 0x${bits.toString(16)}`);
  assert.equal(f16ToF32(0x7c00), Infinity);
  assert.equal(f16ToF32(0xfc00), -Infinity);
  assert.equal(f16ToF32(0x3555), 0.333251953125);
  assert.equal(f16ToF32(0x2e66), 0.0999755859375);
  assert.equal(f16ToF32(0x7bff), 65504);
  assert.equal(f16ToF32(0x0001), 2 ** -24);
  assert.equal(f16ToF32(0x8000), -0);
  assert.ok(Object.is(f16ToF32(0x8000), -0));
  assert.ok(Number.isNaN(f16ToF32(0x7e00)));
  assert.ok(Number.isNaN(f16ToF32(0xfc01)));
  const nanBits = f32ToF16(NaN);
  assert.equal(nanBits & 0x7c00, 0x7c00);
  assert.notEqual(nanBits & 0x3ff, 0);
});

test("f16: every half survives half → float → half; bulk decode equals scalar decode", () => {
  const all = new Uint16Array(65536); // [65536]
  for (let h = 0; h < 65536; h++) all[h] = h;
  const f = decodeF16(all);
  for (let h = 0; h < 65536; h++) {
    const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN) {
      assert.ok(Number.isNaN(f[h]));
      continue;
    }
    assert.ok(Object.is(f[h], f16ToF32(h)), `bits 0x${h.toString(16)}`);
    assert.equal(f32ToF16(f[h]), h, `bits 0x${h.toString(16)}`);
  }
  const back = encodeF16(f);
  for (let h = 0; h < 65536; h++) if (!Number.isNaN(f[h])) assert.equal(back[h], h);
});

test("f16: result is the nearest half (ties to even) for random floats — checked against both neighbours", () => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const x = new Float32Array(200_000); // [n]
  for (let i = 0; i < x.length; i++) x[i] = (rand() - 0.5) * 2 ** (Math.floor(rand() * 44) - 28);
  const h = encodeF16(x);
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    const bits = h[i];
    const mag = bits & 0x7fff;
    const v = f16ToF32(bits);
    if (Math.abs(xi) >= 65520) {
      assert.equal(mag, 0x7c00);
      continue;
    }
    const err = Math.abs(xi - v);
    const sign = bits & 0x8000;
    for (const nb of [mag - 1, mag + 1]) {
      if (nb < 0 || nb > 0x7bff) continue;
      const other = Math.abs(xi - f16ToF32(sign | nb));
      assert.ok(err <= other, `x=${xi}: chose 0x${bits.toString(16)} (err ${err}) but 0x${(sign | nb).toString(16)} is nearer (${other})`);
      if (err === other) assert.equal(mag & 1, 0, `x=${xi}: tie not broken to even`);
    }
    // Round-trip error bound: half an ulp.
    const bound = Math.abs(xi) >= 2 ** -14 ? Math.abs(xi) * 2 ** -11 : 2 ** -25;
    assert.ok(err <= bound, `x=${xi}: error ${err} > ${bound}`);
  }
});

test("f16: midpoints between consecutive positive halves round to the even one", () => {
  for (let h = 0x0001; h < 0x7bff; h += 97) {
    const mid = (f16ToF32(h) + f16ToF32(h + 1)) / 2;
    assert.equal(f32ToF16(mid), h % 2 === 0 ? h : h + 1, `midpoint after 0x${h.toString(16)}`);
  }
});

test("bf16: known bit patterns both ways, ties to even, NaN stays NaN; bulk equals scalar", () => {
  // bfloat16 = top half of the float32 bits, rounded to nearest even.
  const known: [number, number][] = [[0x3f80, 1], [0xc000, -2], [0x4049, 3.140625], [0x7f80, Infinity], [0x0001, 2 ** -133]];
  for (const [bits, v] of known) {
    assert.equal(bf16ToF32(bits), v);
    assert.equal(f32ToBf16(v), bits);
  }
  assert.equal(f32ToBf16(Math.PI), 0x4049);
  assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80); // tie → even
  assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82);
  const u32 = new Uint32Array(1); // [1]
  const f32 = new Float32Array(u32.buffer); // [1]: the same bits as a float
  u32[0] = 0x3f808000; // exactly halfway between 0x3f80 and 0x3f81 → even 0x3f80
  assert.equal(f32ToBf16(f32[0]), 0x3f80);
  u32[0] = 0x3f818000; // halfway between 0x3f81 and 0x3f82 → even 0x3f82
  assert.equal(f32ToBf16(f32[0]), 0x3f82);
  u32[0] = 0x3f808001; // just above halfway → up
  assert.equal(f32ToBf16(f32[0]), 0x3f81);
  assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(NaN))));
  // Bulk forms agree with the scalar ones on every bf16 pattern (and on its float32 image).
  const all = new Uint16Array(65536); // [65536]
  for (let h = 0; h < 65536; h++) all[h] = h;
  const f = decodeBf16(all); // [65536]
  const back = encodeBf16(f); // [65536]
  for (let h = 0; h < 65536; h++) {
    const v = bf16ToF32(h);
    if (Number.isNaN(v)) {
      assert.ok(Number.isNaN(f[h]));
      continue;
    }
    assert.ok(Object.is(f[h], v), `bits 0x${h.toString(16)}`);
    assert.equal(back[h], h, `bits 0x${h.toString(16)}`);
  }
});
