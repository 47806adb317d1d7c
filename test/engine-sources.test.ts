/**
 * One engine, four model sources: Engine.load on stories260K as the .gguf file, as a Hugging Face folder, as an
 * Optimum-layout ONNX export without taps (onnx/model.onnx + external data + config.json + tokenizer files, with
 * Optimum's KV I/O: past_key_values.* in, present.* out), and as the folder `convert --to onnx` writes. Greedy
 * generation must give the same tokens and the prefill hidden states / logits the same values as the GGUF path.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import { convertModel } from "../src/convert/index.js";
import { Engine } from "../src/engine/engine.js";
import { UnsupportedModelError } from "../src/errors.js";
import { buildDecoderGraph } from "../src/graph/decoder.js";
import { loadGguf } from "../src/model/gguf/index.js";
import { specToHfConfig } from "../src/model/hf/index.js";
import { writeTokenizerFiles } from "../src/convert/hf-export.js";
import { loadModel, summarizeModel } from "../src/model/load.js";
import { STORIES260K, maxAbsDiff, tempDir } from "./helpers.js";

const STORIES = STORIES260K;
const MAIN = "dist/src/cli/main.js";
const PROMPT = "Once upon a time, there was a little girl named Lily.";

let root: string;
let cacheDir: string;
let exportDir: string;
let convertDir: string;
let hfDir: string;
let gguf: Engine;

/** stories260K as an Optimum-layout export: our graph without taps, its KV outputs reduced to present.* only. */
async function writeOptimumExport(dir: string): Promise<void> {
  const model = await loadGguf(STORIES);
  try {
    mkdirSync(join(dir, "onnx"), { recursive: true });
    const modelPath = join(dir, "onnx", "model.onnx");
    buildDecoderGraph(model.spec, model.weights, modelPath, { taps: false, int4: false });
    const proto = fromBinary(ModelProtoSchema, readFileSync(modelPath));
    const outputs = proto.graph!.output;
    proto.graph!.output = outputs.filter((o) => !o.name.startsWith("new_key_values."));
    assert.ok(proto.graph!.output.length < outputs.length && proto.graph!.output.some((o) => o.name === "present.0.key"));
    writeFileSync(modelPath, toBinary(ModelProtoSchema, proto));
    writeFileSync(join(dir, "config.json"), JSON.stringify(specToHfConfig(model.spec, "float32")));
    await writeTokenizerFiles(model, STORIES, dir);
  } finally {
    model.weights.close();
  }
}

before(async () => {
  root = tempDir("sources");
  cacheDir = join(root, "graphs");
  exportDir = join(root, "export");
  convertDir = join(root, "converted");
  hfDir = join(root, "hf");
  await writeOptimumExport(exportDir);
  await convertModel(STORIES, { to: "onnx", out: convertDir });
  await convertModel(STORIES, { to: "hf", out: hfDir });
  gguf = await Engine.load(STORIES, { threads: 1, cacheDir, int4: false });
});
after(async () => {
  await gguf?.dispose();
  rmSync(root, { recursive: true, force: true });
});

async function sameAsGguf(path: string, what: string): Promise<void> {
  const engine = await Engine.load(path, { threads: 1, cacheDir });
  try {
    assert.equal(engine.model.format, "onnx", what);
    assert.ok(engine.hasTaps, what);
    const prompt = engine.tokenizer.encode(PROMPT);
    assert.deepEqual(prompt, gguf.tokenizer.encode(PROMPT), `${what}: tokenizer`);
    const a = await engine.forward(prompt, { hidden: true, logits: "all" });
    const b = await gguf.forward(prompt, { hidden: true, logits: "all" });
    assert.ok(a.hidden !== undefined && b.hidden !== undefined);
    assert.deepEqual([a.hidden.layers, a.hidden.tokens, a.hidden.dim], [b.hidden.layers, b.hidden.tokens, b.hidden.dim]);
    const dh = maxAbsDiff(a.hidden.data, b.hidden.data);
    const dl = maxAbsDiff(a.logits, b.logits);
    assert.ok(dh <= 1e-5 && dl <= 1e-5, `${what}: prefill hidden ${dh}, logits ${dl}`);
    const request = { prompt: "Once upon a time", maxTokens: 64, temperature: 0 };
    const ours = await engine.generate(request).result;
    const want = await gguf.generate(request).result;
    assert.ok(want.tokens.length >= 32, `reference generated ${want.tokens.length} tokens`);
    assert.deepEqual(ours.tokens, want.tokens, `${what}: greedy tokens`);
    assert.equal(ours.text, want.text);
  } finally {
    await engine.dispose();
  }
}

test("Engine.load on an untapped Optimum-layout export (tapped in memory): same prefill and greedy 64 tokens as the GGUF", async () => {
  await sameAsGguf(exportDir, "optimum export");
  await sameAsGguf(join(exportDir, "onnx", "model.onnx"), "optimum export .onnx file");
});

test("Engine.load on a `convert --to onnx` folder: self-contained, same prefill and greedy tokens, same fingerprint", async () => {
  for (const f of ["model.onnx", "model.onnx.data", "onepass.json", "tokenizer.json", "tokenizer_config.json"]) {
    assert.ok(readFileSync(join(convertDir, f)).length > 0, f);
  }
  await sameAsGguf(convertDir, "convert folder");
  const model = await loadModel(convertDir);
  // the graph is a build of the GGUF's weights: probes trained on the GGUF apply to it
  assert.equal(model.fingerprint, gguf.fingerprint);
  model.weights.close();
  // a folder written before the rename (spec.layers = the block count) loads with the same spec
  const manifestPath = join(convertDir, "onepass.json");
  const manifest = readFileSync(manifestPath, "utf8");
  assert.ok(manifest.includes('"blocks"'));
  try {
    writeFileSync(manifestPath, manifest.replace('"blocks"', '"layers"'));
    const old = await loadModel(convertDir);
    assert.deepEqual(old.spec, gguf.spec);
    old.weights.close();
  } finally {
    writeFileSync(manifestPath, manifest);
  }
});

test("inspect works on all four kinds; a folder that is none of them is a typed error naming what was looked for", async () => {
  const want = gguf.spec;
  for (const [path, format] of [[STORIES, "gguf"], [hfDir, "hf"], [exportDir, "onnx"], [convertDir, "onnx"]] as const) {
    const r = spawnSync(process.execPath, [MAIN, "inspect", "--model", path, "--json"], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.format, format, path);
    assert.deepEqual([s.spec.blocks, s.spec.dim, s.spec.heads, s.spec.kvHeads, s.spec.vocabSize], [want.blocks, want.dim, want.heads, want.kvHeads, want.vocabSize], path);
    assert.ok(s.tensors > 0 && s.parameters > 0, path);
  }
  // the ONNX weight list reads real values: the export's token embedding equals the GGUF's
  const exp = await loadModel(exportDir);
  const src = await loadGguf(STORIES);
  try {
    const summary = summarizeModel(exp);
    assert.equal(summary.dtypes.f32, summary.tensors);
    const embd = exp.weights.list().find((t) => t.shape.length === 2 && t.shape[0] === want.vocabSize && t.shape[1] === want.dim);
    assert.ok(embd !== undefined);
    assert.equal(maxAbsDiff(exp.weights.readF32(embd.name), src.weights.readF32("token_embd.weight")), 0);
  } finally {
    exp.weights.close();
    src.weights.close();
  }
  const empty = join(root, "empty");
  mkdirSync(empty);
  await assert.rejects(Engine.load(empty), (e: unknown) => e instanceof UnsupportedModelError && e.file === empty && /onnx\/model\.onnx/.test(e.message) && /onepass\.json/.test(e.message) && /safetensors/.test(e.message));
});

test("`onepass generate --model <export dir>` prints the same text as with the .gguf", () => {
  const run = (model: string) =>
    spawnSync(process.execPath, [MAIN, "generate", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "40", "--temperature", "0", "--threads", "1", "--cache-dir", cacheDir], { encoding: "utf8", timeout: 60_000 });
  const a = run(STORIES);
  const b = run(exportDir);
  const c = run(convertDir);
  assert.equal(a.status, 0, a.stderr);
  assert.equal(b.status, 0, b.stderr);
  assert.equal(c.status, 0, c.stderr);
  assert.ok(a.stdout.length > 40, JSON.stringify(a.stdout));
  assert.equal(b.stdout, a.stdout);
  assert.equal(c.stdout, a.stdout);
});
