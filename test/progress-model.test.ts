// Progress of long model work (graph build, convert): what the library reports, and the CLI's bar on stderr.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { Engine } from "../src/engine/engine.js";
import { buildDecoderGraph, BUILD_GRAPH_STAGE, type ProgressEvent } from "../src/graph/decoder.js";
import { convertModel, QUANTISE_INT4_STAGE, WRITE_TENSORS_STAGE } from "../src/convert/index.js";
import { loadModel } from "../src/model/load.js";
import { openSafetensors } from "../src/model/safetensors.js";
import { stageProgress } from "../src/cli/progress.js";
import { STORIES260K, tempDir } from "./helpers.js";

const dirs: string[] = [];
const fresh = (name: string): string => {
  const d = tempDir(name);
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The events of one stage; asserts they count 0, 1, ... up to a constant total, in the given unit. */
function assertCountsUp(events: ProgressEvent[], stage: string, unit: string): number {
  const mine = events.filter((e) => e.stage === stage);
  assert.ok(mine.length > 0, `no ${stage} events`);
  const total = mine[0].total;
  mine.forEach((e, i) => {
    assert.equal(e.total, total, `${stage} total changed`);
    assert.equal(e.unit, unit);
    assert.equal(e.done, i, `${stage} done values must count up by one from 0`);
  });
  assert.equal(mine.at(-1)!.done, total, `${stage} must end at its total`);
  return total;
}

test("buildDecoderGraph reports embedding, each layer and the head, ending at its total", async () => {
  const model = await loadModel(STORIES260K);
  try {
    const events: ProgressEvent[] = [];
    buildDecoderGraph(model.spec, model.weights, join(fresh("progress-build"), "model.onnx"), { onProgress: (p) => events.push({ ...p }) });
    const total = assertCountsUp(events, BUILD_GRAPH_STAGE, "part");
    assert.equal(total, model.spec.blocks + 2); // layer count from the GGUF metadata
    assert.equal(events.length, total + 1);
  } finally {
    model.weights.close();
  }
});

test("Engine.load reports the graph build on a cache miss and nothing on a cache hit", async () => {
  const cacheDir = fresh("progress-cache");
  const events: ProgressEvent[] = [];
  const first = await Engine.load(STORIES260K, { cacheDir, threads: 1, onProgress: (p) => events.push({ ...p }) });
  const layers = first.spec.blocks;
  await first.dispose();
  assert.equal(assertCountsUp(events, BUILD_GRAPH_STAGE, "part"), layers + 2);
  assert.deepEqual([...new Set(events.map((e) => e.stage))], [BUILD_GRAPH_STAGE]);

  const again: ProgressEvent[] = [];
  const second = await Engine.load(STORIES260K, { cacheDir, threads: 1, onProgress: (p) => again.push({ ...p }) });
  await second.dispose();
  assert.deepEqual(again, [], "a cache hit builds nothing, so reports nothing");
});

test("convert --to hf reports one tensor written per tensor in the output file", async () => {
  const out = fresh("progress-hf");
  const events: ProgressEvent[] = [];
  await convertModel(STORIES260K, { to: "hf", out, onProgress: (p) => events.push({ ...p }) });
  const total = assertCountsUp(events, WRITE_TENSORS_STAGE, "tensor");
  const st = openSafetensors(join(out, "model.safetensors"));
  try {
    assert.equal(total, st.tensors.length);
  } finally {
    st.close();
  }
});

test("convert --to onnx --quantize int4 reports each linear matrix quantised and the graph build", async () => {
  const out = fresh("progress-int4");
  const events: ProgressEvent[] = [];
  await convertModel(STORIES260K, { to: "onnx", out, quantize: "int4", onProgress: (p) => events.push({ ...p }) });
  const source = await loadModel(STORIES260K);
  try {
    const linear = source.weights.list().filter((t) => /^blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$/.test(t.name));
    assert.ok(linear.length > 0);
    assert.equal(assertCountsUp(events, QUANTISE_INT4_STAGE, "matrix"), linear.length);
    assert.equal(assertCountsUp(events, BUILD_GRAPH_STAGE, "part"), source.spec.blocks + 2);
  } finally {
    source.weights.close();
  }
});

test("the generate CLI shows the build bar on stderr on a cache miss only; stdout is the text alone", () => {
  const cacheDir = fresh("progress-cli");
  const run = () =>
    spawnSync(process.execPath, ["dist/src/cli/main.js", "generate", "--prompt", "Once upon a time", "--max-tokens", "4", "--temperature", "0", "--cache-dir", cacheDir, "--threads", "1"], {
      encoding: "utf8",
      timeout: 60_000,
    });
  const miss = run();
  assert.equal(miss.status, 0, miss.stderr);
  assert.match(miss.stderr, /building graph (\d+)\/\1 \(100\.0%\) [\d.]+ part\/s ETA 0:00 elapsed/);
  assert.doesNotMatch(miss.stdout, /building graph|part\/s/);
  const hit = run();
  assert.equal(hit.status, 0, hit.stderr);
  assert.doesNotMatch(hit.stderr, /building graph/);
  assert.equal(hit.stdout, miss.stdout, "same text with and without the build");
  assert.ok(hit.stdout.length > 0);
});

test("stageProgress: one bar per stage, a final line at each total, nothing when disabled", () => {
  const lines: string[] = [];
  let t = 0;
  const stream = { write: (s: string) => lines.push(s), isTTY: false };
  const onProgress = stageProgress({ stream, now: () => t, plainEveryMs: 1e9 });
  // interleaved stages, as in an int4 convert (quantising happens inside the build)
  onProgress({ stage: "building graph", done: 0, total: 2, unit: "part" });
  onProgress({ stage: "quantising int4", done: 0, total: 4, unit: "matrix" });
  for (let i = 1; i <= 4; i++) {
    t += 500;
    onProgress({ stage: "quantising int4", done: i, total: 4, unit: "matrix" });
  }
  t += 1000;
  onProgress({ stage: "building graph", done: 1, total: 2, unit: "part" });
  onProgress({ stage: "building graph", done: 2, total: 2, unit: "part" });
  // plain (non-TTY) output: the first report of each stage draws, then one final line per stage
  assert.deepEqual(lines.map((l) => l.split(" ETA")[0]), [
    "building graph 0/2 (0.0%) 0.00 part/s",
    "quantising int4 0/4 (0.0%) 0.00 matrix/s",
    "quantising int4 4/4 (100.0%) 2.00 matrix/s",
    "building graph 2/2 (100.0%) 0.67 part/s",
  ]);
  const silent: string[] = [];
  const off = stageProgress({ stream: { write: (s: string) => silent.push(s) }, enabled: false });
  off({ stage: "building graph", done: 1, total: 1, unit: "part" });
  assert.deepEqual(silent, []);
});
