import { test } from "node:test";
import assert from "node:assert/strict";
import { HiddenStates } from "../src/types/hidden.js";

test("HiddenStates views are layer-major and copy-free", () => {
  const data = new Float32Array(2 * 3 * 4).map((_, i) => i); // [2, 3, 4]
  const h = new HiddenStates(2, 3, 4, data);
  assert.deepEqual(Array.from(h.layer(1)), Array.from({ length: 12 }, (_, i) => 12 + i));
  assert.deepEqual(Array.from(h.token(1, 2)), [20, 21, 22, 23]);
  h.token(0, 0)[0] = 99;
  assert.equal(data[0], 99);
  const s = h.sliceTokens(1, 3);
  assert.equal(s.tokens, 2);
  assert.deepEqual(Array.from(s.token(1, 0)), [16, 17, 18, 19]);
  assert.throws(() => new HiddenStates(2, 3, 5, data), RangeError);
});
