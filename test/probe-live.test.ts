// Probes on the live request (src/probe/live.ts): a scoring probe trained here on stories260K hidden states of
// SST-2 prompts classifies from the generating prefill exactly as Probe.predict does on a separate forward(),
// before any decode step; block policy stops before decoding; annotate leaves the text unchanged.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { loadDataset } from "../src/data/datasets.js";
import { Engine } from "../src/engine/engine.js";
import { generate } from "../src/engine/generate.js";
import type { HiddenStates } from "../src/types/hidden.js";
import { createDecoderSession } from "../src/engine/session.js";
import type { DecoderSession, ForwardOptions } from "../src/engine/types.js";
import { InvalidArgumentError, ModelMismatchError } from "../src/errors.js";
import { loadProbe, saveProbe, type LoadedProbe } from "../src/probe/artifact.js";
import { generateWithProbes, loadProbes, probeHook, type Classification } from "../src/probe/live.js";
import { arraySource, trainProbe } from "../src/probe/train.js";
import { STORIES260K, maxAbsDiff, tempDir } from "./helpers.js";

const MODEL = STORIES260K;
const CLI = "dist/src/cli/main.js";
const PROMPTS = ["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate clichés", "Once upon a time"];

let engine: Engine;
let dir: string;
let probeDir: string;
let loaded: LoadedProbe;

before(async () => {
  dir = tempDir("live");
  engine = await Engine.load(MODEL, { taps: true });
  const ds = await loadDataset({ files: [{ path: "test/fixtures/palma2025/sst2_train.csv" }], limit: 160 });
  const hidden: HiddenStates[] = []; // each [L+1, T, d]
  for (const ex of ds.examples) hidden.push((await engine.forward(ex.text, { hidden: true })).hidden!);
  const r = await trainProbe({ kind: "scoring" }, arraySource(hidden, ds.examples.map((e) => e.label)), { lr: 3e-2, epochs: 4, batchSize: 32, seed: 0 });
  probeDir = join(dir, "sentiment");
  saveProbe(probeDir, r.probe, {
    labelNames: ds.labelNames,
    model: { fingerprint: engine.fingerprint, blocks: engine.spec.blocks, dim: engine.spec.dim },
    threshold: r.threshold,
    tokenization: { addBos: engine.tokenizer.addBosByDefault, template: "raw", maxTokens: null },
  });
  loaded = loadProbe(probeDir, { expectFingerprint: engine.fingerprint });
});

after(async () => {
  await engine?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** The label a probe's meta gives these probabilities (threshold for binary probes, else argmax). */
function expectedLabel(p: LoadedProbe, probs: Float32Array): string {
  const i = probs.length === 2 && p.meta.threshold !== undefined ? (probs[1] >= p.meta.threshold ? 1 : 0) : probs.indexOf(Math.max(...probs));
  return p.meta.labelNames[i];
}

test("the hook's classification (compiled probes) equals probe.predict on engine.forward's hidden states (≤ 1e-5), for the same prompt", async () => {
  for (const prompt of PROMPTS) {
    const { generation, classifications } = generateWithProbes(engine, { prompt, maxTokens: 6, temperature: 0 }, { sentiment: loaded });
    const r = await generation.result;
    const [c] = await classifications;
    const h = (await engine.forward(prompt, { hidden: true })).hidden!;
    const probs = await loaded.probe.predict(h);
    const gate = await loaded.probe.layerWeights(h);
    assert.equal(c.probe, "sentiment");
    assert.ok(maxAbsDiff(Object.values(c.probabilities), probs) <= 1e-5);
    assert.deepEqual(Object.keys(c.probabilities), loaded.meta.labelNames);
    assert.ok(maxAbsDiff(c.layerWeights!, gate!) <= 1e-5);
    assert.equal(c.layerWeights!.length, engine.spec.blocks + 1);
    assert.equal(c.label, expectedLabel(loaded, probs));
    assert.equal(c.threshold, loaded.meta.threshold);
    assert.equal(c.tokens, engine.promptTokens({ prompt }).length);
    assert.equal(c.tokens, r.usage.promptTokens);
    assert.ok(c.probeMs > 0 && c.probeMs < r.timings.hookMs + 1e-6, `probe ${c.probeMs} ms within hook ${r.timings.hookMs} ms`);
    assert.deepEqual(c.warnings, []);
    assert.equal(c.blocks, false);
  }
});

/** A real session that records which runs happened, so the order of prefill / probe / decode is visible. */
function recording(session: DecoderSession, events: string[]): DecoderSession {
  return {
    get vocabSize() { return session.vocabSize; },
    get contextLength() { return session.contextLength; },
    get pastLength() { return session.pastLength; },
    get hasTaps() { return session.hasTaps; },
    forward(tokens: readonly number[], options?: ForwardOptions) {
      events.push(session.pastLength === 0 ? "prefill" : "decode");
      return session.forward(tokens, options);
    },
    reset: () => session.reset(),
    truncate: (n: number) => session.truncate(n),
    dispose: () => session.dispose(),
  };
}

test("probes run after the single prefill and before the first decode step; block never runs a decode step", async () => {
  const session = await createDecoderSession(engine.model, { taps: true });
  try {
    const prompt = engine.promptTokens({ prompt: PROMPTS[0] });
    const label = expectedLabel(loaded, await loaded.probe.predict((await engine.forward(prompt, { hidden: true })).hidden!));
    const other = loaded.meta.labelNames.find((l) => l !== label)!;

    const events: string[] = [];
    const annotate = probeHook([loaded], { fingerprint: engine.fingerprint, onClassified: () => events.push("probe") });
    const r = await generate(recording(session, events), engine.tokenizer, prompt, { maxTokens: 5, temperature: 0, onPrefill: annotate.onPrefill }).result;
    assert.deepEqual(events, ["prefill", "probe", "decode", "decode", "decode", "decode"]);
    assert.equal(r.tokens.length, 5);
    assert.equal((await annotate.results)[0].label, label);

    const blockedEvents: string[] = [];
    const block = probeHook([loaded], { fingerprint: engine.fingerprint, policy: { block: [label] }, onClassified: () => blockedEvents.push("probe") });
    const gen = generate(recording(session, blockedEvents), engine.tokenizer, prompt, { maxTokens: 5, temperature: 0, onPrefill: block.onPrefill });
    const chunks: string[] = [];
    for await (const ch of gen) chunks.push(ch.text);
    const b = await gen.result;
    assert.deepEqual(blockedEvents, ["prefill", "probe"]);
    assert.deepEqual([chunks, b.text, b.tokens, b.finishReason, b.usage.completionTokens], [[], "", [], "blocked", 0]);
    const [c] = await block.results;
    assert.equal(c.blocks, true);

    // blocking on the other label (also as "probe:label") lets the same request through unchanged
    const pass = await generateWithProbes(engine, { prompt, maxTokens: 5, temperature: 0 }, [loaded], { policy: { block: [other, `sentiment:${other}`] } }).generation.result;
    assert.deepEqual([pass.tokens, pass.finishReason], [r.tokens, r.finishReason]);
  } finally {
    await session.dispose();
  }
});

test("annotate generates the same text as a generation without probes (same seed)", async () => {
  const request = { prompt: "Once upon a time", maxTokens: 30, temperature: 1, topP: 0.9, seed: 11 };
  const plain = await engine.generate(request).result;
  const { generation, classifications } = generateWithProbes(engine, request, [loaded]);
  const streamed: string[] = [];
  let classifiedBeforeFirstChunk: boolean | undefined;
  let classified = false;
  void classifications.then(() => (classified = true));
  for await (const ch of generation) {
    classifiedBeforeFirstChunk ??= classified;
    streamed.push(ch.text);
  }
  const probed = await generation.result;
  assert.equal(classifiedBeforeFirstChunk, true);
  assert.deepEqual(probed.tokens, plain.tokens);
  assert.equal(probed.text, plain.text);
  assert.equal(streamed.join(""), plain.text);
  assert.ok(plain.tokens.length > 5);
});

test("the documented order works: await classifications first, then stream or await the result (nothing waits forever)", async () => {
  const request = { prompt: "Once upon a time", maxTokens: 12, temperature: 0 };
  const plain = await engine.generate(request).result;
  // 1. classifications, then the result (README's example): the generation starts without a consumer
  {
    const { generation, classifications } = generateWithProbes(engine, request, [loaded]);
    const [c] = await classifications;
    assert.equal(c.probe, "sentiment");
    assert.deepEqual((await generation.result).tokens, plain.tokens);
  }
  // 2. classifications, then streaming: the held first chunk comes first, nothing is lost
  {
    const { generation, classifications } = generateWithProbes(engine, request, [loaded]);
    await classifications;
    const streamed: string[] = [];
    for await (const ch of generation) streamed.push(ch.text);
    assert.equal(streamed.join(""), plain.text);
    assert.deepEqual((await generation.result).tokens, plain.tokens);
    assert.throws(() => generation[Symbol.asyncIterator](), InvalidArgumentError); // still consumed once
  }
});

test("probes of another model, unknown block labels and a tap-less engine are refused when attached", async () => {
  const foreign = join(dir, "foreign");
  saveProbe(foreign, loaded.probe, { ...loaded.meta, model: { ...loaded.meta.model, fingerprint: "f".repeat(64) } });
  const other = loadProbe(foreign);
  assert.throws(() => probeHook([other], { fingerprint: engine.fingerprint }), (e: unknown) => e instanceof ModelMismatchError && e.field === "model.fingerprint" && e.file === join(foreign, "probe.json"));
  assert.throws(() => generateWithProbes(engine, { prompt: "x" }, [other]), ModelMismatchError);
  assert.throws(() => loadProbes([foreign], engine.fingerprint), ModelMismatchError);
  assert.throws(() => probeHook([loaded], { fingerprint: engine.fingerprint, policy: { block: ["toxic"] } }), (e: unknown) => e instanceof InvalidArgumentError && e.field === "policy.block");
  assert.throws(() => probeHook([loaded, loaded], { fingerprint: engine.fingerprint }), InvalidArgumentError); // same name twice
  const plain = await Engine.load(MODEL, { taps: false });
  try {
    assert.throws(() => generateWithProbes(plain, { prompt: "x" }, [loaded]), (e: unknown) => e instanceof InvalidArgumentError && e.field === "taps");
  } finally {
    await plain.dispose();
  }
});

test("a prompt tokenised unlike the probe's training prompts carries warnings; a length cut matches training", async () => {
  const ids = engine.promptTokens({ prompt: PROMPTS[1] });
  assert.equal(ids[0], engine.tokenizer.bosTokenId);
  const noBos = generateWithProbes(engine, { prompt: ids.slice(1), maxTokens: 0 }, [loaded]);
  await noBos.generation.result;
  assert.match((await noBos.classifications)[0].warnings.join("\n"), /does not start with BOS/);

  const chat = generateWithProbes(engine, { prompt: PROMPTS[1], chat: true, maxTokens: 0 }, [loaded]);
  await chat.generation.result;
  assert.match((await chat.classifications)[0].warnings.join("\n"), /template 'chat'.*'raw'/);

  // a probe trained on the first 4 tokens sees the first 4 of the live prompt: = predict on a pass over those
  const cutDir = join(dir, "cut");
  saveProbe(cutDir, loaded.probe, { ...loaded.meta, tokenization: { ...loaded.meta.tokenization!, maxTokens: 4 } });
  const cut = loadProbe(cutDir);
  const live = generateWithProbes(engine, { prompt: PROMPTS[1], maxTokens: 2, temperature: 0 }, [cut]);
  await live.generation.result;
  const [c] = await live.classifications;
  const expected = await cut.probe.predict((await engine.forward(ids.slice(0, 4), { hidden: true })).hidden!);
  assert.equal(c.tokens, 4);
  assert.match(c.warnings.join("\n"), new RegExp(`prompt has ${ids.length} tokens.*first 4`));
  for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(Object.values(c.probabilities)[i] - expected[i]) < 1e-5);
});

test("CLI: generate --probe prints the classification on stderr and the text on stdout; --json; --block; classify", async () => {
  const prompt = PROMPTS[0];
  const lib = generateWithProbes(engine, { prompt, maxTokens: 12, temperature: 0 }, [loaded]);
  const want = await lib.generation.result;
  const [c] = (await lib.classifications) as Classification[];
  const base = ["generate", "--model", MODEL, "--prompt", prompt, "--max-tokens", "12", "--temperature", "0", "--probe", probeDir];

  const run = spawnSync(process.execPath, [CLI, ...base], { encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, want.text);
  const line = run.stderr.split("\n").find((l) => l.startsWith("probe sentiment:"));
  assert.ok(line, run.stderr);
  const m = /^probe sentiment: (\S+) p=([0-9.]+) \(([0-9.]+) ms\)$/.exec(line!);
  assert.ok(m, line);
  assert.equal(m![1], c.label);
  assert.ok(Math.abs(Number(m![2]) - c.probabilities[c.label]) < 1e-4);
  assert.ok(run.stderr.indexOf(line!) < run.stderr.indexOf("prefill:"), "classification comes before the timings");

  const json = spawnSync(process.execPath, [CLI, ...base, "--json"], { encoding: "utf8" });
  assert.equal(json.status, 0, json.stderr);
  const o = JSON.parse(json.stdout) as { text: string; finishReason: string; usage: { promptTokens: number }; timings: { prefillMs: number }; classifications: Classification[] };
  assert.equal(o.text, want.text);
  assert.equal(o.finishReason, want.finishReason);
  assert.equal(o.usage.promptTokens, want.usage.promptTokens);
  assert.ok(o.timings.prefillMs > 0);
  assert.equal(o.classifications[0].label, c.label);
  assert.ok(Math.abs(o.classifications[0].probabilities[c.label] - c.probabilities[c.label]) < 1e-6);

  const blocked = spawnSync(process.execPath, [CLI, ...base, "--block", c.label], { encoding: "utf8" });
  assert.equal(blocked.status, 0, blocked.stderr);
  assert.equal(blocked.stdout, "");
  assert.match(blocked.stderr, new RegExp(`probe sentiment: ${c.label} p=`));
  assert.match(blocked.stderr, new RegExp(`blocked \\(sentiment: ${c.label}\\)`));
  assert.match(blocked.stderr, /generated tokens: 0 \(blocked\)/);

  const bad = spawnSync(process.execPath, [CLI, ...base, "--block", "no-such-label"], { encoding: "utf8" });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /policy\.block/);

  const cls = spawnSync(process.execPath, [CLI, "classify", "--model", MODEL, "--probe", probeDir, "--text", prompt, "--json"], { encoding: "utf8" });
  assert.equal(cls.status, 0, cls.stderr);
  const k = JSON.parse(cls.stdout) as { label: string; probabilities: Record<string, number> };
  assert.equal(k.label, c.label);
  assert.ok(Math.abs(k.probabilities[c.label] - c.probabilities[c.label]) < 1e-6);
});
