// `onepass generate` as a user runs it: a child process on the compiled CLI.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { tempDir } from "./helpers.js";

const MAIN = "dist/src/cli/main.js";
// karpathy/llama2.c README stories260K greedy sample: its first 20 tokens after BOS
const SAMPLE_START = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";

let cacheDir: string;
before(() => {
  cacheDir = tempDir("cli-test");
});
after(() => rmSync(cacheDir, { recursive: true, force: true }));

function onepass(...args: string[]) {
  return spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", timeout: 60_000 });
}

test("generate prints exactly the generated text on stdout and timings on stderr", () => {
  const r = onepass("generate", "--prompt", "", "--max-tokens", "20", "--temperature", "0", "--cache-dir", cacheDir, "--threads", "1");
  assert.equal(r.status, 0, r.stderr);
  assert.ok(SAMPLE_START.startsWith(r.stdout) && r.stdout.length > 60, JSON.stringify(r.stdout));
  assert.match(r.stderr, /prompt tokens: 1\b/);
  assert.match(r.stderr, /prefill: [\d.]+ ms, [\d.]+ tok\/s/);
  assert.match(r.stderr, /decode: [\d.]+ ms, [\d.]+ tok\/s/);
  assert.match(r.stderr, /total: [\d.]+ ms/);
  // --no-stream and a stop string: same text, cut before the stop string
  const s = onepass("generate", "--prompt", "", "--max-tokens", "20", "--temperature", "0", "--no-stream", "--stop", " little", "--cache-dir", cacheDir);
  assert.equal(s.status, 0, s.stderr);
  assert.equal(s.stdout, "Once upon a time, there was a");
});

test("continuing a text prompt on the built-in model", () => {
  const r = onepass("generate", "--prompt", "Once upon a time, there was a little girl named", "--max-tokens", "3", "--temperature", "0", "--cache-dir", cacheDir);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, " Lily. She");
});

test("--help works; bad flags exit non-zero with a clear message", () => {
  const h = onepass("generate", "--help");
  assert.equal(h.status, 0);
  assert.match(h.stdout, /--max-tokens N/);
  assert.match(onepass("--help").stdout, /generate\s+generate text/);

  const unknown = onepass("generate", "--prompt", "x", "--bogus");
  assert.notEqual(unknown.status, 0);
  assert.match(unknown.stderr, /Unknown option '--bogus'/);
  assert.equal(unknown.stdout, "");

  const badNumber = onepass("generate", "--prompt", "x", "--max-tokens", "ten");
  assert.notEqual(badNumber.status, 0);
  assert.match(badNumber.stderr, /--max-tokens: expects an integer in \[0, ∞\], got 'ten'/);

  const badTemp = onepass("generate", "--prompt", "x", "--temperature=-2", "--cache-dir", cacheDir);
  assert.notEqual(badTemp.status, 0);
  assert.match(badTemp.stderr, /--temperature: expects a number in \[0, ∞\], got '-2'/);

  const noPrompt = onepass("generate");
  assert.notEqual(noPrompt.status, 0);
  assert.match(noPrompt.stderr, /--prompt is required/);

  const missingModel = onepass("generate", "--prompt", "x", "--model", "/nonexistent/model.gguf");
  assert.notEqual(missingModel.status, 0);
  assert.match(missingModel.stderr, /\/nonexistent\/model\.gguf/);
  assert.doesNotMatch(missingModel.stderr, /internal error/);

  const overflow = onepass("generate", "--prompt", "x", "--max-tokens", "100000", "--cache-dir", cacheDir);
  assert.notEqual(overflow.status, 0);
  assert.match(overflow.stderr, /context_length/);
});
