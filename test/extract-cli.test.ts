import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { loadDataset } from "../src/data/datasets.js";
import { openFeatureCache } from "../src/data/features.js";
import { Engine } from "../src/engine/engine.js";
import { runNodeScript, tempDir, type ChildRun } from "./helpers.js";

const CLI = "dist/src/cli/main.js";
const DATA = "test/fixtures/palma2025/sst2_test.csv";
const N = 120;

/** The CLI as a child process, SIGKILLed once `killAt.dir` holds `killAt.n` index lines. */
function cli(args: string[], killAt?: { dir: string; n: number }): Promise<ChildRun> {
  return runNodeScript(CLI, args, killAt);
}

test("onepass extract with stories260K: size estimate, SIGKILL + resume, cache equals engine.forward hidden states", async () => {
  const dir = tempDir("extract");
  const out = join(dir, "cache");
  try {
    const args = ["extract", "--data", DATA, "--limit", String(N), "--shard-size", "16", "--max-tokens", "24", "--threads", "1", "--out", out];
    const first = await cli(args, { dir: out, n: 40 });
    assert.ok(first.killed, `the run ended before it was killed: ${first.stderr}`);
    assert.match(first.stderr, /estimated size ≈ [\d.]+ (KiB|MiB)/);
    const second = await cli(args);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, /done, 120 examples \((\d+) were already there\)/);
    const resumedFrom = Number(/\((\d+) were already there\)/.exec(second.stderr)![1]);
    assert.ok(resumedFrom >= 40 && resumedFrom < N, second.stderr);
    assert.ok(!readdirSync(out).some((f) => f.endsWith(".part") || f.endsWith(".tmp") || f === "lock"));

    // Bad arguments fail with a message, not a stack trace.
    const bad = await cli(["extract", "--data", DATA, "--out", out, "--mode", "sparse"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--mode must be full or summary/);

    const cache = openFeatureCache(out);
    const ds = await loadDataset({ files: [{ path: DATA }], limit: N });
    assert.equal(cache.size, N);
    assert.deepEqual([...cache.labels], ds.examples.map((e) => e.label));
    const engine = await Engine.load(undefined, { taps: true, threads: 1 });
    try {
      assert.equal(cache.manifest.model.fingerprint, engine.fingerprint);
      assert.equal(cache.manifest.model.layers, engine.spec.blocks + 1);
      for (let i = 0; i < N; i += 7) {
        const ids = engine.promptTokens({ prompt: ds.examples[i].text }).slice(0, 24);
        const want = (await engine.forward(ids, { hidden: true })).hidden!;
        const got = cache.get(i);
        assert.deepEqual([got.layers, got.tokens, got.dim], [want.layers, want.tokens, want.dim], `example ${i}`);
        for (let k = 0; k < want.data.length; k++) {
          const x = want.data[k];
          assert.ok(Math.abs(got.data[k] - x) <= Math.abs(x) * 2 ** -11 + 2 ** -25, `example ${i} value ${k}: ${got.data[k]} vs ${x}`);
        }
      }
    } finally {
      await engine.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
