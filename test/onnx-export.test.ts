/**
 * loadOnnxExport on an Optimum-layout folder (config.json, tokenizer.json, onnx/model.onnx + model.onnx.data)
 * written WITHOUT taps: its DecoderSession must give the same hidden states and logits as the engine's own
 * session over the graph built with taps, through prefill, decode steps and truncate.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GraphError, ModelFormatError } from "../src/errors.js";
import { createDecoderSession } from "../src/engine/session.js";
import type { ForwardPass } from "../src/engine/types.js";
import { buildDecoderGraph } from "../src/graph/decoder.js";
import { OnnxModelBuilder, float } from "../src/onnx/proto.js";
import { tapOnnxFile } from "../src/graph/surgery.js";
import { loadGguf } from "../src/model/gguf/index.js";
import { specToHfConfig } from "../src/model/hf/index.js";
import { loadOnnxExport } from "../src/engine/onnx-model.js";
import { openOnnxDecoderSession } from "../src/engine/session.js";
import type { ModelSpec } from "../src/model/spec.js";
import { ggufVocabToTokenizerJson } from "../src/tokenizer/gguf-convert.js";
import { readGgufVocab } from "../src/model/gguf/tokenizer.js";
import { tokenizerFromGguf } from "../src/model/gguf/tokenizer.js";
import { STORIES260K, maxAbsDiff, tempDir } from "./helpers.js";

const STORIES = STORIES260K;

function assertSamePass(a: ForwardPass, b: ForwardPass, what: string): void {
  assert.equal(a.positions, b.positions, what);
  assert.ok(maxAbsDiff(a.logits, b.logits) <= 1e-5, `${what}: logits`);
  assert.ok(a.hidden !== undefined && b.hidden !== undefined, what);
  assert.deepEqual([a.hidden.layers, a.hidden.tokens, a.hidden.dim], [b.hidden.layers, b.hidden.tokens, b.hidden.dim], what);
  assert.ok(maxAbsDiff(a.hidden.data, b.hidden.data) <= 1e-5, `${what}: hidden states`);
}

/** Writes stories260K as an Optimum-layout export folder without taps. */
async function writeStoriesExport(dir: string, layersInConfig?: number): Promise<ModelSpec> {
  const model = await loadGguf(STORIES);
  mkdirSync(join(dir, "onnx"), { recursive: true });
  buildDecoderGraph(model.spec, model.weights, join(dir, "onnx", "model.onnx"), { taps: false, int4: false });
  model.weights.close();
  const config = specToHfConfig(model.spec, "float32");
  if (layersInConfig !== undefined) config.num_hidden_layers = layersInConfig;
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(ggufVocabToTokenizerJson(await readGgufVocab(STORIES))));
  // As Llama exports ship it: BOS added by tokenizer_config.json.
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ add_bos_token: true, add_eos_token: false, bos_token: "<s>", eos_token: "</s>" }));
  return model.spec;
}

test("loadOnnxExport: an untapped Optimum-layout export runs with hidden states equal to the engine's tapped graph", async () => {
  const dir = tempDir("onnx-export");
  try {
    const spec = await writeStoriesExport(join(dir, "export"));
    const exp = await loadOnnxExport(join(dir, "export"));
    assert.equal(exp.spec.blocks, spec.blocks);
    assert.equal(exp.spec.dim, spec.dim);
    assert.equal(exp.stream?.blocks, spec.blocks);
    assert.match(exp.fingerprint, /^sha256:[0-9a-f]{64}$/);

    const text = "Once upon a time, there was a little girl named Lily.";
    const ggufTokenizer = await tokenizerFromGguf(STORIES);
    const prompt = exp.tokenizer.encode(text);
    assert.deepEqual(prompt, ggufTokenizer.encode(text));

    const ours = await exp.createSession({ threads: 1 });
    const engine = await createDecoderSession(await loadGguf(STORIES), { taps: true, int4: false, threads: 1, cacheDir: join(dir, "cache") });
    assert.ok(ours.hasTaps);
    assertSamePass(await ours.forward(prompt, { hidden: true, logits: "all" }), await engine.forward(prompt, { hidden: true, logits: "all" }), "prefill");
    for (const next of [435, 300]) {
      assertSamePass(await ours.forward([next], { hidden: true }), await engine.forward([next], { hidden: true }), `decode ${next}`);
    }
    assert.equal(ours.pastLength, prompt.length + 2);
    ours.truncate(3);
    engine.truncate(3);
    assertSamePass(await ours.forward([400, 401], { hidden: true }), await engine.forward([400, 401], { hidden: true }), "after truncate");
    await ours.dispose();
    await engine.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("loadOnnxExport: a config whose num_hidden_layers disagrees with the graph, or a folder without a model, is a typed error", async () => {
  const dir = tempDir("onnx-export");
  try {
    await writeStoriesExport(join(dir, "bad"), 7);
    await assert.rejects(loadOnnxExport(join(dir, "bad")), (e: unknown) => e instanceof GraphError && e.field === "num_hidden_layers" && /config says num_hidden_layers = 7/.test(e.message));
    mkdirSync(join(dir, "empty"));
    await assert.rejects(loadOnnxExport(join(dir, "empty")), (e: unknown) => e instanceof ModelFormatError && e.file === join(dir, "empty") && /onnx\/model\.onnx/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an export without KV-cache inputs re-runs the sequence and returns only the new tokens' states", async () => {
  // A causal toy decoder: x + CumSum(norm(x)) over time, then + norm(x)·W; opset-23 RMSNormalization.
  const dir = tempDir("onnx-export");
  try {
    const V = 12;
    const D = 4;
    const path = join(dir, "model.onnx");
    const b = new OnnxModelBuilder(path, 23);
    const ids = b.input("input_ids", "int64", ["batch_size", "sequence_length"]); // [1, T]
    b.input("attention_mask", "int64", ["batch_size", "sequence_length"]); // [1, T]
    const w = (n: number, s: number) => Array.from({ length: n }, (_, i) => Math.sin(i * s));
    const norm = (x: string) => b.op("RMSNormalization", [x, b.constF32(w(D, 0.7).map((v) => 1 + v / 2))], { axis: -1, epsilon: float(1e-5) }); // [1, T, D]
    const x0 = b.op("Gather", [b.constF32(w(V * D, 1.3), [V, D]), ids], { axis: 0 }); // [1, T, D]
    const x1 = b.op("Add", [x0, b.op("CumSum", [norm(x0), b.constI64([1], [])])]); // [1, T, D]
    const x2 = b.op("Add", [x1, b.op("MatMul", [norm(x1), b.constF32(w(D * D, 0.3), [D, D])])]); // [1, T, D]
    b.node("MatMul", [norm(x2), b.constF32(w(D * V, 0.9), [D, V])], ["logits"]); // [1, T, V]
    b.output("logits", "float32", ["batch_size", "sequence_length", V]);
    b.finish();
    const tapped = tapOnnxFile(path, undefined, { blocks: 1 });
    const spec: ModelSpec = {
      architecture: "llama", blocks: 1, dim: D, ffnDim: D, heads: 1, kvHeads: 1, headDim: D, vocabSize: V, contextLength: 16,
      rmsNormEps: 1e-5, ropeTheta: 10000, ropeDim: D, ropeStyle: "half", qkvBias: false, qkNorm: false, tiedEmbeddings: false, eosTokenIds: [],
    };
    const incremental = await openOnnxDecoderSession({ path: tapped.path }, spec, { threads: 1 });
    const whole = await openOnnxDecoderSession({ path: tapped.path }, spec, { threads: 1 });
    const tokens = [3, 7, 1, 11, 5];
    const full = await whole.forward(tokens, { hidden: true, logits: "all" });
    await incremental.forward(tokens.slice(0, 3), { hidden: true });
    const step = await incremental.forward(tokens.slice(3), { hidden: true, logits: "all" });
    assert.equal(incremental.pastLength, 5);
    assert.equal(step.positions, 2);
    assert.ok(maxAbsDiff(step.logits, full.logits.subarray(3 * V)) <= 1e-6);
    assert.ok(step.hidden !== undefined && full.hidden !== undefined);
    assert.equal(step.hidden.tokens, 2);
    for (let l = 0; l < 2; l++) {
      for (const t of [0, 1]) assert.ok(maxAbsDiff(step.hidden.token(l, t), full.hidden.token(l, t + 3)) <= 1e-6);
    }
    // The prefix matters (CumSum is causal): a fresh run of the last two tokens alone differs.
    await incremental.dispose();
    await whole.dispose();
    const fresh = await openOnnxDecoderSession({ path: tapped.path }, spec, { threads: 1 });
    const short = await fresh.forward(tokens.slice(3), { hidden: true, logits: "all" });
    assert.ok(maxAbsDiff(short.logits, step.logits) > 1e-3);
    await fresh.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
