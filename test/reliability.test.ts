// Issue #8: nothing a user wrote is lost, no stack traces, no silent garbage. One test (or more) per item.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { extractFeatures, type HiddenStateSource } from "../src/data/features.js";
import { plantedTask } from "./probe-synthetic.js";
import { STORIES260K, tempDir } from "./helpers.js";

const CLI = "dist/src/cli/main.js";
const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 60_000, env: { ...process.env, ...env } });

/** A small planted-signal feature cache (4 layers × d 16), `n` rows, classes alternating. */
export async function syntheticCache(dir: string, n = 60, seed = 3, labelNames = ["neg", "pos"]): Promise<void> {
  const task = plantedTask(n, { layers: 4, dim: 16, layer: 1, position: 0, seed });
  const byText = new Map(task.hidden.map((h, i) => [`prompt ${i}`, h]));
  const source: HiddenStateSource = {
    fingerprint: "model-A", layers: 4, dim: 16, tokenization: { addBos: true, template: "raw" },
    async hidden(text) { return byText.get(text)!; },
  };
  const examples = task.labels.map((label, i) => ({ text: `prompt ${i}`, label }));
  await extractFeatures({ source, examples, labelNames, outDir: dir, mode: "full" });
}

/** One stderr line, starting "onepass:", that is not an internal error. */
function assertTypedFailure(r: { status: number | null; stderr: string }, pattern?: RegExp): void {
  assert.equal(r.status, 1, r.stderr);
  const lines = r.stderr.split("\n").filter((l) => l.startsWith("onepass:"));
  assert.equal(lines.length, 1, r.stderr);
  assert.doesNotMatch(lines[0], /internal error/);
  if (pattern !== undefined) assert.match(lines[0], pattern);
}

test("1. train --out never deletes what is not an onepass probe folder; an earlier probe is replaced", async () => {
  const dir = tempDir("rel-loss");
  try {
    const feats = join(dir, "feats");
    await syntheticCache(feats);
    const keep = join(dir, "keep");
    mkdirSync(keep);
    writeFileSync(join(keep, "a.txt"), "x");
    const file = join(dir, "notes.txt");
    writeFileSync(file, "mine");
    const base = ["train", "--features", feats, "--probe", "pooling", "--epochs", "1", "--quiet"];
    for (const out of [keep, file, feats, "."]) {
      const r = cli([...base, "--out", out]);
      assertTypedFailure(r, /not an onepass probe folder|not a folder|holds/);
    }
    assert.equal(readFileSync(join(keep, "a.txt"), "utf8"), "x");
    assert.equal(readFileSync(file, "utf8"), "mine");
    assert.ok(existsSync(join(feats, "manifest.json")));
    assert.deepEqual(readdirSync(dir).filter((n) => n.includes(".tmp") || n.includes(".old")), []);
    // A probe folder is written, then replaced atomically by a second run.
    const probe = join(dir, "probe");
    assert.equal(cli([...base, "--out", probe]).status, 0);
    const first = readFileSync(join(probe, "probe.json"), "utf8");
    const again = cli([...base, "--seed", "7", "--out", probe]);
    assert.equal(again.status, 0, again.stderr);
    assert.notEqual(readFileSync(join(probe, "probe.json"), "utf8"), first);
    assert.deepEqual(readdirSync(probe).sort(), ["probe.json", "weights.safetensors"]);
    assert.deepEqual(readdirSync(dir).sort(), ["feats", "keep", "notes.txt", "probe"]);
    // convert --out into a non-empty folder, and eval --report over a file that is not a report, are refused.
    assertTypedFailure(cli(["convert", "--model", STORIES260K, "--to", "hf", "--out", keep]), /not empty/);
    assertTypedFailure(cli(["eval", "--probe", probe, "--features", feats, "--report", file]), /not an onepass report/);
    assert.equal(readFileSync(file, "utf8"), "mine");
    const report = join(dir, "r.html");
    assert.equal(cli(["eval", "--probe", probe, "--features", feats, "--report", report, "--quiet"]).status, 0);
    assert.equal(cli(["eval", "--probe", probe, "--features", feats, "--report", report, "--quiet"]).status, 0, "an earlier report is replaced");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("2. ORT telemetry is off by default: a 100k-character prompt is a typed error, not a segfault, and no telemetry database appears", () => {
  const home = tempDir("rel-home");
  try {
    const prompt = "a ".repeat(50_000); // 100k characters on the command line
    const r = cli(["generate", "--prompt", prompt, "--max-tokens", "4", "--threads", "1"], { HOME: home, ONEPASS_CACHE_DIR: join(home, "cache") });
    assert.equal(r.signal, null, `killed by ${r.signal}`);
    assertTypedFailure(r, /exceeds the context window/);
    assert.equal(existsSync(join(home, ".cache", "Microsoft")), false, "ORT telemetry database written");
    // A short prompt still generates with telemetry off.
    const ok = cli(["generate", "--prompt", "Once upon a time", "--max-tokens", "4", "--temperature", "0", "--threads", "1"], { HOME: home, ONEPASS_CACHE_DIR: join(home, "cache") });
    assert.equal(ok.status, 0, ok.stderr);
    assert.ok(ok.stdout.length > 0);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
