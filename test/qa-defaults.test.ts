/** User-facing defaults and failure modes found in QA: metric by task kind, integer layer ticks, negative flags, unwritable outputs. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { loadPreset } from "../src/data/datasets.js";
import { writeFileAtomic } from "../src/util/atomic.js";
import { defaultSelectionMetric } from "../src/probe/train.js";
import { integerTicks } from "../src/pages/report.js";
import { numberFlag, parseFlags } from "../src/cli/args.js";
import { InvalidArgumentError } from "../src/errors.js";

const FIXTURES = "test/fixtures";

test("presets record their task kind, and the default metric follows the paper (sentiment → accuracy, safety → f1)", async () => {
  const ds = await loadPreset("sst2", { dataDir: FIXTURES, limit: 5 });
  assert.equal(ds.task, "sentiment");
  assert.deepEqual(ds.labelNames, ["negative", "positive"]);
  assert.equal(defaultSelectionMetric(2, ds.task), "accuracy");
  assert.equal(defaultSelectionMetric(2, "safety"), "f1");
  assert.equal(defaultSelectionMetric(2, undefined), "f1");
  assert.equal(defaultSelectionMetric(6, "topic"), "accuracy");
  assert.equal(defaultSelectionMetric(6, undefined), "accuracy");
  // unknown kind: the class balance decides (a balanced CSV is scored on accuracy, an imbalanced one on F1)
  assert.equal(defaultSelectionMetric(2, undefined, [0, 1, 0, 1, 1, 0]), "accuracy");
  assert.equal(defaultSelectionMetric(2, undefined, [0, 0, 0, 0, 0, 0, 0, 1]), "f1");
  assert.equal(defaultSelectionMetric(2, "safety", [0, 1, 0, 1]), "f1");
});

test("layer axes get integer ticks ending on the last layer", () => {
  assert.deepEqual(integerTicks(5), [0, 1, 2, 3, 4, 5]);
  const many = integerTicks(32);
  assert.ok(many.every(Number.isInteger) && many.length <= 11 && many.at(-1) === 32 && many[0] === 0, String(many));
});

test("a negative number after a string flag reaches the range check instead of parseArgs' ambiguity error", () => {
  const v = parseFlags(["--limit", "-1"], { limit: { type: "string" } }, "usage");
  assert.equal(v.limit, "-1");
  assert.throws(() => numberFlag("limit", v.limit, { int: true, min: 1 }), (e: unknown) => e instanceof InvalidArgumentError && /--limit.*\[1, ∞\].*'-1'/.test(e.message));
});

test("writing into a missing folder is a typed error naming the file", () => {
  const path = join(tmpdir(), `onepass-missing-${process.pid}`, "r.html");
  assert.throws(() => writeFileAtomic(path, "x"), (e: unknown) => e instanceof InvalidArgumentError && e.message.includes(path) && /ENOENT/.test(e.message));
});
