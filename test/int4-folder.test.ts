// `onepass convert --to onnx --quantize int4` folders run through Engine.load exactly like the in-memory int4
// path (quantizeModelInt4 + createDecoderSession builds the same graph): identical logits and greedy tokens,
// hence the same int4 error against F32. The accuracy level comes from onepass.json, and a folder at either
// level opens one ORT session for prefill and decode (one copy of the weights).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import "../src/util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { convertModel } from "../src/convert/index.js";
import { Engine } from "../src/engine/engine.js";
import { createDecoderSession } from "../src/engine/session.js";
import { loadModel } from "../src/model/load.js";
import { quantizeModelInt4 } from "../src/model/quantize.js";
import { ModelFormatError } from "../src/errors.js";
import type { LoadedModel } from "../src/model/spec.js";
import { argmax, maxAbsDiff, STORIES260K, tempDir } from "./helpers.js";

let root: string;
let cacheDir: string;
let stories: LoadedModel;
const folders: Record<0 | 4, string> = { 0: "", 4: "" };
const PROMPT = [1, 403, 407, 261, 378, 29, 395, 372, 260, 488, 275, 26]; // stories260K ids

before(async () => {
  root = tempDir("int4-folder");
  cacheDir = join(root, "graphs");
  stories = await loadModel(STORIES260K);
  for (const level of [0, 4] as const) {
    folders[level] = join(root, `int4-l${level}`);
    await convertModel(STORIES260K, { to: "onnx", out: folders[level], quantize: "int4", accuracyLevel: level });
  }
});
after(() => {
  stories?.weights.close();
  rmSync(root, { recursive: true, force: true });
});

/** Counts ORT sessions created while `fn` runs (the engine and the session module share this ORT module). */
async function countSessions<T>(fn: () => Promise<T>): Promise<{ value: T; sessions: number }> {
  const original = ort.InferenceSession.create;
  let sessions = 0;
  (ort.InferenceSession as { create: unknown }).create = (...args: unknown[]) => {
    sessions++;
    return (original as (...a: unknown[]) => unknown).apply(ort.InferenceSession, args);
  };
  try {
    return { value: await fn(), sessions };
  } finally {
    (ort.InferenceSession as { create: unknown }).create = original;
  }
}

for (const level of [0, 4] as const) {
  test(`int4 folder (accuracy level ${level}) = in-memory int4 session: logits, hidden states, greedy tokens`, async (t) => {
    const { value: engine, sessions } = await countSessions(() => Engine.load(folders[level], { threads: 2 }));
    // prefill and decode share one session at the folder's level: one copy of the weights
    assert.equal(sessions, 1, `ORT sessions opened for the level-${level} folder`);
    const memory = await createDecoderSession(quantizeModelInt4(stories), { cacheDir, threads: 2, accuracyLevel: level });
    const f32 = await createDecoderSession(stories, { cacheDir, threads: 2 });
    try {
      const a = await engine.forward(PROMPT, { hidden: true, logits: "all" });
      const b = await memory.forward(PROMPT, { hidden: true, logits: "all" });
      const c = await f32.forward(PROMPT, { logits: "all" });
      const same = maxAbsDiff(a.logits, b.logits);
      const sameHidden = maxAbsDiff(a.hidden!.data, b.hidden!.data);
      const errFolder = maxAbsDiff(a.logits, c.logits);
      const errMemory = maxAbsDiff(b.logits, c.logits);
      t.diagnostic(`prefill: folder vs in-memory max |Δlogit| ${same}, |Δh| ${sameHidden}; int4 vs F32 folder ${errFolder.toFixed(4)}, in-memory ${errMemory.toFixed(4)}`);
      assert.ok(same <= 1e-5 && sameHidden <= 1e-5, `folder vs in-memory: logits ${same}, hidden ${sameHidden}`);
      assert.ok(errMemory > 1e-3, `int4 did not move the logits (${errMemory}): not really quantised`);
      assert.ok(errFolder <= errMemory + 1e-5, `folder int4 error ${errFolder} > in-memory ${errMemory}`);

      // decode steps run on the level-`level` session in both: greedy tokens and per-step logits agree
      const gen = engine.generate({ prompt: PROMPT, maxTokens: 24, temperature: 0, eosTokenIds: [] });
      const { tokens } = await gen.result;
      memory.reset();
      let out = await memory.forward(PROMPT);
      const expected: number[] = [];
      for (let i = 0; i < 24; i++) {
        const next = argmax(out.logits);
        expected.push(next);
        if (i < 23) out = await memory.forward([next]);
      }
      assert.deepEqual(tokens, expected);
    } finally {
      await engine.dispose();
      await memory.dispose();
      await f32.dispose();
    }
  });
}

test("a bad accuracy level in onepass.json is a ModelFormatError naming the field", async () => {
  const manifestPath = join(folders[0], "onepass.json");
  const original = readFileSync(manifestPath, "utf8");
  const manifest = JSON.parse(original);
  assert.equal(manifest.accuracyLevel, 0);
  manifest.quantize.accuracyLevel = 7;
  writeFileSync(manifestPath, JSON.stringify(manifest));
  try {
    await assert.rejects(() => Engine.load(folders[0], { threads: 2 }), (e: unknown) => e instanceof ModelFormatError && e.field === "quantize.accuracyLevel" && e.file === manifestPath);
  } finally {
    writeFileSync(manifestPath, original);
  }
});
