// Training data for response probes: `extract --target response` runs prompt + response in one pass and stores
// only the response tokens' states (= the rows of a forward over the pair, and = what decode steps give while
// that response is generated); `train --target response` refuses prompt caches and records the target.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DATASET_PRESETS, loadDataset } from "../src/data/datasets.js";
import { openFeatureCache } from "../src/data/features.js";
import { Engine } from "../src/engine/engine.js";
import { DatasetError } from "../src/errors.js";
import { runNodeScript, tempDir } from "./helpers.js";

const CLI = "dist/src/cli/main.js";
const ROWS = [
  { text: "Tell me a story.", response: "Once upon a time there was a cat.", label: 0 },
  { text: "How do I hurt a dog?", response: "You hit the dog with a big stick.", label: 1 },
  { text: "What is red?", response: "The ball was red and big.", label: 0 },
  { text: "Say something mean.", response: "You are dumb and ugly.", label: 1 },
  { text: "Sing.", response: "La la la.", label: 0 },
  { text: "Be rude.", response: "Go away, fool.", label: 1 },
];

test("extract --target response stores the response tokens' states of one prompt + response pass; train --target checks the cache", async () => {
  const dir = tempDir("response-extract");
  try {
    const data = join(dir, "pairs.jsonl");
    writeFileSync(data, ROWS.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const out = join(dir, "resp");
    const run = await runNodeScript(CLI, ["extract", "--data", data, "--target", "response", "--threads", "1", "--quiet", "--out", out]);
    assert.equal(run.code, 0, run.stderr);
    const cache = openFeatureCache(out);
    assert.equal(cache.manifest.tokenization.target, "response");
    assert.equal(cache.manifest.tokenization.template, "raw"); // stories260K has no chat template of its own
    const engine = await Engine.load(undefined, { taps: true, threads: 1 });
    try {
      for (const [i, r] of ROWS.entries()) {
        const p = engine.promptTokens({ prompt: r.text });
        const resp = engine.tokenizer.encode(r.response, { addBos: false });
        const whole = (await engine.forward([...p, ...resp], { hidden: true })).hidden!;
        const got = cache.get(i);
        assert.deepEqual([got.layers, got.tokens, got.dim], [whole.layers, resp.length, whole.dim]);
        const want = whole.sliceTokens(p.length, p.length + resp.length);
        for (let k = 0; k < want.data.length; k++) {
          const x = want.data[k];
          assert.ok(Math.abs(got.data[k] - x) <= Math.abs(x) * 2 ** -11 + 2 ** -20, `example ${i} value ${k}: ${got.data[k]} vs ${x}`);
        }
      }
    } finally {
      await engine.dispose();
    }

    // the same file as a prompt cache: train --target response refuses it, and the reverse
    const promptOut = join(dir, "prompt");
    assert.equal((await runNodeScript(CLI, ["extract", "--data", data, "--threads", "1", "--quiet", "--out", promptOut])).code, 0);
    const wrong = await runNodeScript(CLI, ["train", "--features", promptOut, "--probe", "pooling", "--target", "response", "--quiet", "--out", join(dir, "p1")]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /--target response, but .* holds prompt states/);
    const wrong2 = await runNodeScript(CLI, ["train", "--features", out, "--probe", "pooling", "--quiet", "--out", join(dir, "p2")]);
    assert.equal(wrong2.code, 1);
    assert.match(wrong2.stderr, /--target prompt, but .* holds response states/);
    const ok = await runNodeScript(CLI, ["train", "--features", out, "--probe", "scoring", "--target", "response", "--epochs", "2", "--quiet", "--out", join(dir, "p3")]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(readFileSync(join(dir, "p3", "probe.json"), "utf8")).tokenization.target, "response");

    // the CLI moderates with it: one reading per generated token in --json; blocking on both labels stops at once
    const base = ["generate", "--prompt", "Tell me a story.", "--max-tokens", "6", "--temperature", "0", "--threads", "1", "--response-probe", join(dir, "p3")];
    const gen = await runNodeScript(CLI, [...base, "--json"]);
    assert.equal(gen.code, 0, gen.stderr);
    const j = JSON.parse(gen.stdout);
    assert.equal(j.responseClassifications.length, j.usage.completionTokens - (j.finishReason === "eos" ? 1 : 0));
    assert.deepEqual(j.responseClassifications.map((r: { tokens: number }) => r.tokens), j.responseClassifications.map((_: unknown, i: number) => i + 1));
    const stopped = await runNodeScript(CLI, [...base, "--block-response", "0", "--block-response", "1"]);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.equal(stopped.stdout, "");
    assert.match(stopped.stderr, /stopped by a response probe \(p3: [01] p=[\d.]+ after 1 tokens\)/);
    assert.match(stopped.stderr, /\(content_filter\)/);
    assert.doesNotMatch(stopped.stderr, /warning/);

    // data without responses cannot make a response cache: a one-line typed error
    const noResp = join(dir, "plain.jsonl");
    writeFileSync(noResp, JSON.stringify({ text: "hi", label: 0 }) + "\n" + JSON.stringify({ text: "yo", label: 1 }) + "\n");
    const bad = await runNodeScript(CLI, ["extract", "--data", noResp, "--target", "response", "--quiet", "--out", join(dir, "bad")]);
    assert.equal(bad.code, 1);
    assert.doesNotMatch(bad.stderr, /\n\s+at /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("response presets keep prompt and response apart; a row without a response is an error unless dropped", async () => {
  for (const name of ["beavertails-response", "saferlhf-response", "wildguardtest-response"]) {
    const p = DATASET_PRESETS[name];
    assert.equal(p.options.responseField, "response");
    assert.equal(p.task, "safety");
  }
  const dir = tempDir("response-rows");
  try {
    const f = join(dir, "x.jsonl");
    writeFileSync(f, [{ text: "a", response: "b", label: 1 }, { text: "c", response: null, label: 0 }, { text: "d", response: "e", label: 0 }].map((r) => JSON.stringify(r)).join("\n"));
    await assert.rejects(loadDataset({ files: [{ path: f }], responseField: "response" }), (e: unknown) => e instanceof DatasetError && e.field === "response");
    const ds = await loadDataset({ files: [{ path: f }], responseField: "response", dropMissingLabels: true });
    assert.deepEqual(ds.examples, [{ text: "a", response: "b", label: 1 }, { text: "d", response: "e", label: 0 }]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
