// The OpenAI-compatible server, driven by the official `openai` client and by raw HTTP: chat, streaming, completions,
// moderations, classify; equality with `onepass generate`; blocking before any decode step (the engine's own
// counter); load (bounded queue → 429), client disconnects, malformed requests, timeouts, metrics.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import OpenAI from "openai";
import { Engine } from "../src/engine/engine.js";
import { InvalidArgumentError } from "../src/errors.js";
import { createServer, startServer, type OnepassServer } from "../src/serve/server.js";
import { builtinProbeSpecs } from "../src/serve/probes.js";
import type { Classifications } from "../src/serve/protocol.js";
import { STORIES260K } from "./helpers.js";

const SENTIMENT = "assets/probes/sentiment";

let engine: Engine;
let server: OnepassServer;
let client: OpenAI;
/** A prompt the sentiment probe labels `blockLabel` (found at start-up), for the blocking tests. */
let blockPrompt = "";
let blockLabel = "";

async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = { raw: text };
  }
  return { status: res.status, json, headers: res.headers };
}

/** Probe verdicts without the wall-clock field (which differs run to run). */
function verdicts(c: Classifications): Record<string, unknown> {
  return Object.fromEntries(Object.entries(c).map(([k, v]) => [k, { label: v.label, probabilities: v.probabilities, flagged: v.flagged, threshold: v.threshold, tokens: v.tokens }]));
}

before(async () => {
  engine = await Engine.load(STORIES260K, { taps: true, threads: 2 });
  server = await startServer({
    engine,
    port: 0,
    // the built-in probes, plus the sentiment probe again under a blocking policy, selected per request
    probes: [...builtinProbeSpecs(), { dir: SENTIMENT, name: "blocker", policy: "block", labels: ["positive"] }],
  });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
  // a prompt the blocker flags: the first candidate the sentiment probe calls positive
  const candidates = ["a gorgeous, witty, seductive movie.", "what a wonderful, lovely day", "I love this, it is great", "the best film of the year", "Once upon a time"];
  const r = await post(`${server.url}/v1/classify`, { input: candidates, probes: ["sentiment"] });
  const hit = r.json.data.find((d: any) => d.classifications.sentiment.label === "positive");
  blockLabel = "positive";
  blockPrompt = candidates[hit?.index ?? 0];
  assert.ok(hit !== undefined, "no candidate labelled positive");
});

after(async () => {
  await server?.close();
  await engine?.dispose();
});

describe("OpenAI client", () => {
  test("chat completion carries text, usage and every probe's classification", async () => {
    const r = await client.chat.completions.create({ model: server.modelName, messages: [{ role: "user", content: "Tell me a story about a cat." }], max_tokens: 16, temperature: 0 });
    assert.equal(r.object, "chat.completion");
    assert.ok(r.choices[0].message.content!.length > 0);
    assert.ok(["length", "stop"].includes(r.choices[0].finish_reason));
    assert.equal(r.usage!.total_tokens, r.usage!.prompt_tokens + r.usage!.completion_tokens);
    const cls = (r as unknown as { classifications: Classifications }).classifications;
    assert.deepEqual(Object.keys(cls).sort(), ["blocker", "safety", "sentiment"]);
    for (const c of Object.values(cls)) {
      const sum = Object.values(c.probabilities).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - 1) < 1e-5, `probabilities sum to ${sum}`);
      assert.ok(c.label in c.probabilities);
    }
    assert.deepEqual(Object.keys(cls.safety.probabilities), ["non-toxic", "toxic"]);
  });

  test("streaming chat: the first chunk holds the classifications (== /v1/classify's) and no text; usage at the end", async () => {
    const prompt = "The movie was dull and far too long.";
    const stream = await client.chat.completions.create({
      model: server.modelName, messages: [{ role: "user", content: prompt }], max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
      // the per-request field, to run only two of the probes
      ...({ onepass: { probes: ["sentiment", "safety"] } } as object),
    });
    const chunks: any[] = [];
    for await (const c of stream) chunks.push(c);
    assert.ok(chunks[0].classifications, "first chunk has classifications");
    assert.equal(chunks[0].choices[0].delta.content, "");
    assert.equal(chunks.slice(1).filter((c) => c.classifications).length, 0);
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    assert.ok(text.length > 0);
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.completion_tokens, 12);
    const classify = await post(`${server.url}/v1/classify`, { input: prompt, probes: ["sentiment", "safety"] });
    assert.equal(classify.status, 200);
    assert.deepEqual(verdicts(chunks[0].classifications), verdicts(classify.json.data[0].classifications));
    // and the same text non-streamed
    const whole = await client.chat.completions.create({ model: server.modelName, messages: [{ role: "user", content: prompt }], max_tokens: 12, temperature: 0 });
    assert.equal(whole.choices[0].message.content, text);
  });

  test("completion and moderations", async () => {
    const steps = engine.stats.decodeSteps;
    // without the blocking probe (selected per request), which may refuse this prompt depending on the built-in sentiment probe
    const notBlocked = { onepass: { probes: ["sentiment", "safety"] } } as object;
    const c = await client.completions.create({ model: server.modelName, prompt: "Once upon a time", max_tokens: 10, temperature: 0, ...notBlocked });
    // the engine's counter: the first token comes from the prefill's logits, each later one from a decode step
    assert.equal(engine.stats.decodeSteps - steps, 9);
    assert.equal(c.object, "text_completion");
    assert.ok(c.choices[0].text.length > 0);
    assert.equal(c.usage!.completion_tokens, 10);
    const cs = await client.completions.create({ model: server.modelName, prompt: "Once upon a time", max_tokens: 10, temperature: 0, stream: true, ...notBlocked });
    let streamed = "";
    for await (const ch of cs) streamed += ch.choices[0]?.text ?? "";
    assert.equal(streamed, c.choices[0].text);

    const before = engine.stats.decodeSteps;
    const m = await client.moderations.create({ model: server.modelName, input: ["I will hurt you", "what a lovely day"] });
    assert.equal(engine.stats.decodeSteps, before, "moderation decodes nothing");
    assert.equal(m.results.length, 2);
    const r0 = m.results[0] as any;
    // categories are the probes' labels; labels two probes share (sentiment and blocker) get the probe's name
    assert.deepEqual(Object.keys(r0.category_scores).sort(), ["blocker:negative", "blocker:positive", "non-toxic", "sentiment:negative", "sentiment:positive", "toxic"]);
    assert.equal(r0.categories.toxic, r0.classifications.safety.label === "toxic");
    assert.ok(Math.abs(r0.category_scores.toxic + r0.category_scores["non-toxic"] - 1) < 1e-5);
    assert.equal(typeof r0.flagged, "boolean");
    assert.equal(r0.flagged, Object.values(r0.classifications as Classifications).some((c) => c.flagged));
  });

  test("models, health, ready, metrics", async () => {
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), [server.modelName]);
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    const ready = (await (await fetch(`${server.url}/ready`)).json()) as { ready: boolean };
    assert.equal(ready.ready, true);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    for (const name of ["onepass_http_requests_total", "onepass_queue_depth", "onepass_prefill_seconds_bucket", "onepass_probe_seconds_bucket", "onepass_decode_seconds_bucket", "onepass_prompt_tokens_total", "onepass_completion_tokens_total", "onepass_probe_decisions_total", "onepass_process_resident_memory_bytes"]) {
      assert.ok(metrics.includes(name), name);
    }
    assert.match(metrics, /onepass_http_requests_total\{route="\/v1\/chat\/completions",method="POST",status="200"\} \d+/);
  });
});

describe("same text as onepass generate", () => {
  for (const [what, flags, body] of [
    ["temperature 0", ["--temperature", "0"], { temperature: 0 }],
    ["seeded sample", ["--temperature", "0.9", "--top-p", "0.95", "--seed", "7"], { temperature: 0.9, top_p: 0.95, seed: 7 }],
  ] as const) {
    test(what, async () => {
      const prompt = "Tell me about a little bird.";
      const cli = spawnSync(process.execPath, ["dist/src/cli/main.js", "generate", "--prompt", prompt, "--chat", "--max-tokens", "24", ...flags, "--json", "--threads", "1"], { encoding: "utf8" });
      assert.equal(cli.status, 0, cli.stderr);
      const expected = JSON.parse(cli.stdout) as { text: string; usage: { completionTokens: number } };
      const r = await client.chat.completions.create({ model: server.modelName, messages: [{ role: "user", content: prompt }], max_tokens: 24, ...body });
      assert.equal(r.choices[0].message.content, expected.text);
      assert.equal(r.usage!.completion_tokens, expected.usage.completionTokens);
    });
  }
});

describe("block policy", () => {
  test("a blocking probe that flags the prompt: refusal, content_filter, zero decode steps (non-stream and stream)", async () => {
    const before = { ...engine.stats };
    const r = await post(`${server.url}/v1/chat/completions`, { messages: [{ role: "user", content: blockPrompt }], max_tokens: 20, onepass: { probes: ["blocker"] } });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.choices[0].finish_reason, "content_filter");
    assert.equal(r.json.classifications.blocker.label, blockLabel);
    assert.equal(r.json.classifications.blocker.blocked, true);
    assert.ok(r.json.choices[0].message.content.length > 0);
    assert.equal(engine.stats.decodeSteps, before.decodeSteps, "no decode step ran");
    assert.equal(engine.stats.prefills, before.prefills + 1);

    const stream = await client.chat.completions.create({
      model: server.modelName, messages: [{ role: "user", content: blockPrompt }], max_tokens: 20, stream: true, ...({ onepass: { probes: ["blocker"] } } as object),
    });
    const chunks: any[] = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks[0].classifications.blocker.blocked, true);
    assert.equal(chunks[chunks.length - 1].choices[0].finish_reason, "content_filter");
    assert.equal(engine.stats.decodeSteps, before.decodeSteps, "no decode step ran (stream)");
    // the same prompt without the blocking probe decodes
    const ok = await client.chat.completions.create({ model: server.modelName, messages: [{ role: "user", content: blockPrompt }], max_tokens: 5, ...({ onepass: { probes: ["sentiment"] } } as object) });
    assert.notEqual(ok.choices[0].finish_reason, "content_filter");
    assert.ok(engine.stats.decodeSteps > before.decodeSteps);
  });
});

describe("load and faults", () => {
  test("64 concurrent clients, queue bound 16: each completes correctly or gets 429; health and RSS fine after", async () => {
    const s = await startServer({ engine, port: 0, probes: builtinProbeSpecs(), maxQueue: 16 });
    try {
      const body = { messages: [{ role: "user", content: "Say something nice." }], max_tokens: 8, temperature: 0 };
      const ref = await post(`${s.url}/v1/chat/completions`, body);
      assert.equal(ref.status, 200);
      setFlagsFromString("--expose-gc");
      const gc = runInNewContext("gc") as () => void;
      // warm up the allocator at this load, then measure
      await Promise.all(Array.from({ length: 8 }, () => post(`${s.url}/v1/chat/completions`, body)));
      gc();
      const rssBefore = process.memoryUsage().rss;
      const results = await Promise.all(Array.from({ length: 64 }, () => post(`${s.url}/v1/chat/completions`, body)));
      const ok = results.filter((r) => r.status === 200);
      const busy = results.filter((r) => r.status === 429);
      assert.equal(ok.length + busy.length, 64, `statuses: ${results.map((r) => r.status).join(",")}`);
      assert.ok(ok.length >= 17 && busy.length > 0, `${ok.length} ok, ${busy.length} 429`);
      for (const r of ok) assert.equal(r.json.choices[0].message.content, ref.json.choices[0].message.content);
      for (const r of busy) {
        assert.equal(r.json.error.type, "rate_limit_error");
        assert.ok(Number(r.headers.get("retry-after")) >= 1);
      }
      assert.equal((await fetch(`${s.url}/health`)).status, 200);
      gc();
      const rssAfter = process.memoryUsage().rss;
      console.log(`# 64 clients, queue 16: ${ok.length} completed, ${busy.length} got 429; RSS ${(rssBefore / 2 ** 20).toFixed(1)} → ${(rssAfter / 2 ** 20).toFixed(1)} MiB`);
      assert.ok(rssAfter <= rssBefore * 1.1, `RSS ${rssBefore} → ${rssAfter}`);
    } finally {
      await s.close();
    }
  });

  test("a client that disconnects mid-stream frees the engine at the next step", async () => {
    const ac = new AbortController();
    const decodeBefore = engine.stats.decodeSteps;
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json" }, signal: ac.signal,
      body: JSON.stringify({ messages: [{ role: "user", content: "Tell me a very long story." }], max_tokens: 400, temperature: 0, stream: true }),
    });
    const reader = res.body!.getReader();
    let seen = "";
    while (!seen.includes('"content":"') || !seen.includes("delta\":{\"content")) seen += new TextDecoder().decode((await reader.read()).value);
    ac.abort();
    // the next request is served promptly: it waited at most a few decode steps, not 400
    const next = await post(`${server.url}/v1/chat/completions`, { messages: [{ role: "user", content: "Hi" }], max_tokens: 2, temperature: 0 });
    assert.equal(next.status, 200);
    const stepsOfAborted = engine.stats.decodeSteps - decodeBefore - 1; // the next request decoded 1 step
    console.log(`# disconnect: the aborted stream ran ${stepsOfAborted} decode steps of 400; the next request queued ${next.json.timings.queue_ms.toFixed(1)} ms`);
    assert.ok(stepsOfAborted < 100, `${stepsOfAborted} decode steps after disconnect`);
    assert.ok(next.json.timings.queue_ms < 250, `queued ${next.json.timings.queue_ms} ms`);
  });

  test("a port out of range or already taken: a one-line InvalidArgumentError naming the port", async () => {
    await assert.rejects(startServer({ engine, port: 70000, probes: [] }), (e) => e instanceof InvalidArgumentError && /port must be an integer from 0 to 65535/.test(e.message));
    const taken = Number(new URL(server.url).port);
    await assert.rejects(startServer({ engine, port: taken, probes: [] }), (e) => e instanceof InvalidArgumentError && e.message.includes(`cannot listen on 127.0.0.1:${taken}: EADDRINUSE`));
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
  });

  test("per-request timeout → 408 with an OpenAI error body", async () => {
    const s = await createServer({ engine, port: 0, probes: [], requestTimeoutMs: 30 });
    await s.listen();
    try {
      const r = await post(`${s.url}/v1/completions`, { prompt: "Once", max_tokens: 400, temperature: 0 });
      assert.equal(r.status, 408, JSON.stringify(r.json));
      assert.equal(r.json.error.code, "request_timeout");
      assert.equal((await post(`${server.url}/v1/completions`, { prompt: "Once", max_tokens: 2 })).status, 200);
    } finally {
      await s.close();
    }
  });

  test("≥ 100 malformed requests → 4xx with a clear message, never 5xx; the server answers normally after", async () => {
    const keyed = await startServer({ engine, port: 0, probes: builtinProbeSpecs(), apiKey: "sekret" });
    const chat = `${server.url}/v1/chat/completions`;
    const msgs = [{ role: "user", content: "hi" }];
    const cases: Array<{ url: string; body: unknown; headers?: Record<string, string>; status?: number; param?: string; raw?: Buffer; method?: string }> = [];
    const bad = (field: string, values: unknown[], base: Record<string, unknown> = { messages: msgs }, url = chat) => {
      for (const v of values) cases.push({ url, body: { ...base, [field]: v }, param: field });
    };
    bad("max_tokens", [-1, 0, 1.5, "10", true, [], {}, 1e9, engine.contextLength + 1, Number.MAX_SAFE_INTEGER]);
    bad("max_completion_tokens", [-5, "a", 1e12]);
    bad("temperature", [-0.1, 2.5, "hot", [], {}, true]);
    bad("top_p", [0, -1, 1.5, "x", {}]);
    bad("seed", [1.5, "s", {}, []]);
    bad("stop", [1, [1], ["a", "b", "c", "d", "e"], [""], {}]);
    bad("stream", ["yes", 1, {}]);
    bad("stream_options", [1, "x", []]);
    bad("n", [2, 5, 0]);
    bad("tools", [[{ type: "function", function: { name: "f" } }]]);
    bad("logprobs", [true]);
    bad("presence_penalty", [0.5]);
    bad("frequency_penalty", [1]);
    bad("logit_bias", [{ "1": 5 }]);
    bad("response_format", [{ type: "json_object" }]);
    bad("model", ["gpt-4o", "", 5]);
    bad("onepass", ["x", 1, { probes: ["nope"] }, { probes: "safety" }, { probes: [1] }, { layer_weights: "yes" }, { response_probes: ["nope"] }, { response_probes: "harm" }]);
    bad("messages", [undefined, null, "hi", [], [1], [{}], [{ role: "tool", content: "x" }], [{ role: "user", content: 5 }], [{ role: "user", content: [{ type: "image_url" }] }], [{ role: 5, content: "x" }]], {});
    bad("prompt", [undefined, 5, [1.5], [], ["a", "b"], {}, true], { max_tokens: 2 }, `${server.url}/v1/completions`);
    bad("input", [undefined, 5, [], [1], {}, Array.from({ length: 65 }, () => "x")], {}, `${server.url}/v1/moderations`);
    bad("input", [undefined, 5, []], {}, `${server.url}/v1/classify`);
    bad("template", ["jinja", 5], { input: "x" }, `${server.url}/v1/classify`);
    bad("probes", [["nope"], "safety"], { input: "x" }, `${server.url}/v1/classify`);
    // not JSON, not UTF-8, not an object, empty, too big
    for (const raw of ["{", "{\"messages\": [", "nul", "[]", "\"text\"", "42", "{\"a\":1,}", "{'a':1}", "\u0000", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}"]) cases.push({ url: chat, body: raw });
    for (const bytes of [[0xff, 0xfe], [0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d], [0xed, 0xa0, 0x80], [0x80]]) cases.push({ url: chat, body: null, raw: Buffer.from(bytes) });
    cases.push({ url: chat, body: { messages: [{ role: "user", content: "x".repeat(2 << 20) }] }, status: 413 });
    cases.push({ url: chat, body: { messages: [{ role: "user", content: "story ".repeat(engine.contextLength + 100) }] }, param: "messages" });
    cases.push({ url: chat, body: { messages: msgs, max_tokens: engine.contextLength - 8 }, param: "max_tokens" });
    cases.push({ url: `${server.url}/v1/moderations`, body: { input: "story ".repeat(engine.contextLength + 100) } });
    cases.push({ url: `${server.url}/v1/nope`, body: {}, status: 404 });
    cases.push({ url: `${server.url}/v1/models/gpt-4`, body: undefined, method: "GET", status: 404 });
    // a known path with the wrong method: 405 (checked for its Allow header below)
    cases.push({ url: `${server.url}/v1/chat/completions`, body: undefined, method: "GET", status: 405 });
    cases.push({ url: `${server.url}/v1/models`, body: {}, method: "POST", status: 405 });
    cases.push({ url: `${server.url}/health`, body: {}, method: "DELETE", status: 405 });
    // the keyed server: missing, wrong, malformed keys
    for (const h of [{}, { authorization: "Bearer wrong" }, { authorization: "Bearer " }, { authorization: "Basic c2VrcmV0" }, { authorization: "sekret" }, { authorization: "Bearer sekret2" }]) {
      cases.push({ url: `${keyed.url}/v1/chat/completions`, body: { messages: msgs, max_tokens: 2 }, headers: h as Record<string, string>, status: 401 });
    }
    cases.push({ url: `${keyed.url}/v1/models`, body: undefined, method: "GET", status: 401 });
    try {
      assert.ok(cases.length >= 100, `${cases.length} cases`);
      let i = 0;
      for (const c of cases) {
        i++;
        const res = await fetch(c.url, {
          method: c.method ?? "POST",
          headers: { "content-type": "application/json", ...(c.headers ?? {}) },
          ...(c.method === "GET" ? {} : { body: c.raw ?? (typeof c.body === "string" ? c.body : JSON.stringify(c.body)) }),
          signal: AbortSignal.timeout(30_000),
        });
        const text = await res.text();
        const what = `case ${i} ${c.url.replace(server.url, "")} ${JSON.stringify(c.body)?.slice(0, 80)} → ${res.status} ${text.slice(0, 200)}`;
        assert.ok(res.status >= 400 && res.status < 500, what);
        if (c.status !== undefined) assert.equal(res.status, c.status, what);
        const body = JSON.parse(text) as { error: { message: string; type: string; param: string | null } };
        assert.ok(body.error.message.length > 5 && !body.error.message.includes("\n    at "), what);
        assert.ok(!/undefined|\[object Object\]/.test(body.error.message), what);
        if (c.param !== undefined && res.status === 400) assert.ok(body.error.param?.startsWith(c.param) || body.error.message.includes(c.param), what);
      }
      // 405s name the methods the path takes
      assert.equal((await fetch(chat)).headers.get("allow"), "POST");
      assert.equal((await fetch(`${server.url}/v1/models/x`, { method: "PUT" })).headers.get("allow"), "GET, HEAD");
      const wrong = await fetch(`${server.url}/v1/classify`, { method: "GET" });
      assert.equal(wrong.status, 405);
      assert.match(((await wrong.json()) as { error: { message: string } }).error.message, /GET is not allowed on \/v1\/classify \(allowed: POST\)/);
      // the server still answers, with and without the key
      assert.equal((await post(chat, { messages: msgs, max_tokens: 2 })).status, 200);
      assert.equal((await post(`${keyed.url}/v1/chat/completions`, { messages: msgs, max_tokens: 2 }, { authorization: "Bearer sekret" })).status, 200);
      assert.equal((await fetch(`${keyed.url}/health`)).status, 200);
      console.log(`# ${cases.length} malformed requests: all 4xx with an OpenAI error body`);
    } finally {
      await keyed.close();
    }
  });
});
