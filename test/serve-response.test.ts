// Response probes in the server, driven by the official `openai` client: a blocking response probe that flags a
// planted condition (one token of the answer, found from the model's own hidden states) stops the stream with
// finish_reason "content_filter", the text streamed before it is the prefix the same generation has without the
// probe (temperature 0), and the readings travel in the chunks (on each label change and on the last chunk) and in
// the body; annotate mode leaves the text identical to no probe; requests pick response probes by name.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { Engine, type GenerateRequest } from "../src/engine/engine.js";
import { saveProbe, loadProbe } from "../src/probe/artifact.js";
import { generateWithProbes } from "../src/probe/live.js";
import { Probe } from "../src/probe/probe.js";
import { startServer, type OnepassServer } from "../src/serve/server.js";
import type { ResponseClassifications } from "../src/serve/protocol.js";
import { STORIES260K, tempDir } from "./helpers.js";

const PROMPT = "Tell me a story about a little cat.";
const MAX = 30;

let dir: string;
let engine: Engine;
let server: OnepassServer;
let client: OpenAI;
/** The answer without response probes (library, temperature 0). */
let plain: { text: string; tokens: number[] };
/** The generated token (0-based) the planted probe flags, and the library's answer with that probe blocking. */
let k = -1;
let blockedText = "";

before(async () => {
  dir = tempDir("serve-response");
  engine = await Engine.load(STORIES260K, { taps: true, threads: 2 });
  const request: GenerateRequest = { messages: [{ role: "user", content: PROMPT }], maxTokens: MAX, temperature: 0 };
  // the answer's per-token hidden states (each [L+1, d]), from the decode steps
  const states: Float32Array[] = [];
  const r = await engine.generate({ ...request, onDecodeStep: ({ pass }) => void states.push(pass.hidden!.data.slice()) }).result;
  plain = { text: r.text, tokens: r.tokens };
  assert.ok(states.length >= 8, `the answer has ${states.length} tokens`);
  // the planted condition: a fixed last-token probe whose head separates exactly one token's final-layer state,
  // the one scoring highest against w (the 6th token's state), the bias halfway to the runner-up
  const L1 = engine.spec.blocks + 1, d = engine.spec.dim;
  const probe = new Probe({ kind: "fixed", layer: L1 - 1, token: "last" }, { layers: L1, dim: d, classes: 2 });
  const w = states[5].slice((L1 - 1) * d, L1 * d); // [d]
  const scores = states.map((s) => s.subarray((L1 - 1) * d).reduce((acc, v, j) => acc + v * w[j], 0));
  const order = scores.map((_, i) => i).sort((a, b) => scores[b] - scores[a]);
  k = order[0];
  const mid = (scores[order[0]] + scores[order[1]]) / 2, scale = 20 / (scores[order[0]] - scores[order[1]]);
  for (let j = 0; j < d; j++) probe.headWeight.data[j * 2 + 1] = scale * w[j];
  probe.headBias.data[1] = -scale * mid;
  const probeDir = join(dir, "harm");
  saveProbe(probeDir, probe, {
    labelNames: ["safe", "unsafe"], threshold: 0.5,
    model: { fingerprint: engine.fingerprint, blocks: engine.spec.blocks, dim: d },
    tokenization: { addBos: engine.tokenizer.addBosByDefault, template: "chat", maxTokens: null, target: "response" },
  });
  // the library's answer with this probe blocking: the reference for the server's
  const lib = generateWithProbes(engine, request, [], { response: { probes: { harm: loadProbe(probeDir) }, policy: { block: ["unsafe"] } } });
  const lr = await lib.generation.result;
  assert.equal(lr.finishReason, "content_filter");
  assert.equal(lr.tokens.length, k);
  blockedText = lr.text;
  console.log(`# planted token ${k} of ${states.length}: stopped answer ${JSON.stringify(blockedText)} of ${JSON.stringify(plain.text)}`);
  assert.ok(k >= 1 && blockedText.length > 0 && plain.text.startsWith(blockedText) && blockedText.length < plain.text.length, `k ${k}: "${blockedText}" vs "${plain.text}"`);

  server = await startServer({
    engine,
    port: 0,
    probes: [{ dir: "assets/probes/sentiment" }],
    // the same probe twice: blocking under one name, annotating under another
    responseProbes: [
      { dir: probeDir, name: "harm", policy: "block", labels: ["unsafe"] },
      { dir: probeDir, name: "watch", policy: "annotate", labels: ["unsafe"] },
    ],
  });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
});

after(async () => {
  await server?.close();
  await engine?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

type Chunk = { choices: Array<{ delta: { content?: string }; finish_reason: string | null }>; classifications?: unknown; response_classifications?: ResponseClassifications };

async function streamChat(responseProbes: string[]): Promise<{ chunks: Chunk[]; text: string; finish: string | null }> {
  const stream = await client.chat.completions.create({
    model: server.modelName, messages: [{ role: "user", content: PROMPT }], max_tokens: MAX, temperature: 0, stream: true,
    ...({ onepass: { response_probes: responseProbes } } as object),
  });
  const chunks: Chunk[] = [];
  for await (const c of stream) chunks.push(c as unknown as Chunk);
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
  return { chunks, text, finish: chunks[chunks.length - 1].choices[0].finish_reason };
}

async function chat(responseProbes: string[]) {
  const r = await client.chat.completions.create({
    model: server.modelName, messages: [{ role: "user", content: PROMPT }], max_tokens: MAX, temperature: 0,
    ...({ onepass: { response_probes: responseProbes } } as object),
  });
  return r as typeof r & { response_classifications?: ResponseClassifications };
}

test("no response probe: the server's answer is the library's", async () => {
  const s = await streamChat([]);
  assert.equal(s.text, plain.text);
  assert.ok(s.chunks.every((c) => c.response_classifications === undefined));
  const r = await chat([]);
  assert.equal(r.choices[0].message.content, plain.text);
  assert.equal(r.response_classifications, undefined);
});

test("a blocking response probe stops the stream with content_filter; the text before is the answer's prefix; readings on change and on the last chunk", async () => {
  const before = engine.stats.decodeSteps;
  const s = await streamChat(["harm"]);
  assert.equal(s.finish, "content_filter");
  assert.equal(s.text, blockedText);
  assert.ok(plain.text.startsWith(s.text));
  // the first chunk holds the prompt probes' classifications, before any reading of the answer
  assert.ok(s.chunks[0].classifications !== undefined && s.chunks[0].response_classifications === undefined);
  const updates = s.chunks.slice(0, -1).filter((c) => c.response_classifications !== undefined);
  // one update at the first token (safe), one at the flagged token k+1 (unsafe, blocked); no text after it
  assert.deepEqual(updates.map((c) => [c.response_classifications!.harm.tokens, c.response_classifications!.harm.label, c.response_classifications!.harm.blocked]), [[1, "safe", false], [k + 1, "unsafe", true]]);
  const stopAt = s.chunks.indexOf(updates[1]);
  assert.ok(s.chunks.slice(stopAt + 1).every((c) => (c.choices[0]?.delta.content ?? "") === ""), "no text after the stop");
  // the last chunk: the final reading with its history
  const final = s.chunks[s.chunks.length - 1].response_classifications!.harm;
  assert.deepEqual([final.label, final.blocked, final.flagged, final.tokens, final.threshold], ["unsafe", true, true, k + 1, 0.5]);
  assert.deepEqual(final.history, [{ tokens: 1, label: "safe" }, { tokens: k + 1, label: "unsafe" }]);
  assert.ok(Math.abs(final.probabilities.safe + final.probabilities.unsafe - 1) < 1e-5 && final.probabilities.unsafe >= 0.5);
  assert.ok(final.probe_ms >= 0);
  // decoding stopped at the flagged token: its own run (to read it) is the last one
  assert.equal(engine.stats.decodeSteps - before, k + 1);

  const r = await chat(["harm"]);
  assert.equal(r.choices[0].finish_reason, "content_filter");
  assert.equal(r.choices[0].message.content, blockedText);
  assert.deepEqual([r.response_classifications!.harm.label, r.response_classifications!.harm.blocked, r.response_classifications!.harm.tokens], ["unsafe", true, k + 1]);
  assert.equal(r.response_classifications!.watch, undefined, "only the probes the request named");
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  assert.match(metrics, /onepass_response_stopped_total\{probe="harm"\} 2/);
});

test("annotate: the text is identical to no probe; the readings mark the flagged token and go on", async () => {
  const s = await streamChat(["watch"]);
  assert.equal(s.text, plain.text);
  const final = s.chunks[s.chunks.length - 1].response_classifications!.watch;
  assert.equal(final.blocked, false);
  assert.equal(final.tokens, plain.tokens.length);
  assert.deepEqual(final.history.slice(0, 3), [{ tokens: 1, label: "safe" }, { tokens: k + 1, label: "unsafe" }, { tokens: k + 2, label: "safe" }].slice(0, k + 1 < plain.tokens.length ? 3 : 2));
  const r = await chat(["watch"]);
  assert.equal(r.choices[0].message.content, plain.text);
  const t = (r as unknown as { timings: { response_probe_ms: number; decode_ms: number } }).timings;
  assert.ok(t.response_probe_ms > 0 && t.response_probe_ms < t.decode_ms);
  console.log(`# annotate: response probe ${t.response_probe_ms.toFixed(2)} ms over ${final.tokens} tokens, decode ${t.decode_ms.toFixed(1)} ms`);
  assert.notEqual(r.choices[0].finish_reason, "content_filter");
  assert.deepEqual(r.response_classifications!.watch.history, final.history);
});

test("by default every response probe runs (the blocking one stops it); completions too; unknown names are a 400", async () => {
  const r = await client.chat.completions.create({ model: server.modelName, messages: [{ role: "user", content: PROMPT }], max_tokens: MAX, temperature: 0 });
  const rc = (r as unknown as { response_classifications: ResponseClassifications }).response_classifications;
  assert.deepEqual(Object.keys(rc).sort(), ["harm", "watch"]);
  assert.equal(r.choices[0].finish_reason, "content_filter");
  assert.equal(r.choices[0].message.content, blockedText);
  const c = await client.completions.create({ model: server.modelName, prompt: "Once upon a time", max_tokens: 8, temperature: 0, ...({ onepass: { response_probes: ["watch"] } } as object) });
  const cc = (c as unknown as { response_classifications: ResponseClassifications }).response_classifications;
  assert.ok(cc.watch.tokens >= 1 && cc.watch.tokens <= c.usage!.completion_tokens);
  const bad = await fetch(`${server.url}/v1/chat/completions`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], onepass: { response_probes: ["nope"] } }),
  });
  assert.equal(bad.status, 400);
  const body = (await bad.json()) as { error: { message: string; param: string } };
  assert.equal(body.error.param, "onepass.response_probes");
  assert.match(body.error.message, /unknown response probe 'nope' \(loaded: harm, watch\)/);
  const ready = (await (await fetch(`${server.url}/ready`)).json()) as { response_probes: string[] };
  assert.deepEqual(ready.response_probes, ["harm", "watch"]);
});

test("a server running 4 requests at once (batched decoding): each answer and its response readings equal the request alone", async () => {
  const wide = await startServer({ engine, port: 0, probes: [], responseProbes: server.responseProbes.map((p) => ({ dir: p.loaded.dir, name: p.name, policy: p.policy, labels: [...p.flags] })), concurrency: 4 });
  try {
    const prompts = [PROMPT, "Once upon a time there was a dog.", "Tell me about the sun.", "What did Lily find?"];
    const ask = (content: string) =>
      fetch(`${wide.url}/v1/chat/completions`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ messages: [{ role: "user", content }], max_tokens: MAX, temperature: 0 }),
      }).then((r) => r.json() as Promise<{ choices: Array<{ message: { content: string }; finish_reason: string }>; response_classifications: ResponseClassifications }>);
    const alone: Awaited<ReturnType<typeof ask>>[] = [];
    for (const p of prompts) alone.push(await ask(p));
    const before = engine.batchStats;
    const together = await Promise.all(prompts.map(ask));
    const after = engine.batchStats;
    assert.ok((after.decodeRows - before.decodeRows) / (after.decodeRuns - before.decodeRuns) > 1.5, "the requests decoded together");
    together.forEach((t, i) => {
      assert.equal(t.choices[0].message.content, alone[i].choices[0].message.content);
      assert.equal(t.choices[0].finish_reason, alone[i].choices[0].finish_reason);
      for (const name of ["harm", "watch"]) {
        const a = alone[i].response_classifications[name], b = t.response_classifications[name];
        assert.deepEqual([b.label, b.tokens, b.blocked, b.history], [a.label, a.tokens, a.blocked, a.history]);
        for (const l of Object.keys(a.probabilities)) assert.ok(Math.abs(a.probabilities[l] - b.probabilities[l]) <= 1e-5);
      }
    });
    // the planted request stops in the batch as alone; the others run on
    assert.equal(together[0].choices[0].finish_reason, "content_filter");
    assert.equal(together[0].choices[0].message.content, blockedText);
  } finally {
    await wide.close();
  }
});
