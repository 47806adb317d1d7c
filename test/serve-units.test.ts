// Small parts of the server: probe specs from the command line, the bounded admission queue, error bodies.
import { test } from "node:test";
import assert from "node:assert/strict";
import { InvalidArgumentError, ContextOverflowError } from "../src/errors.js";
import { Admission } from "../src/serve/admission.js";
import { QueueFullError, ShuttingDownError, errorBody, toServeError } from "../src/serve/errors.js";
import { parseProbeSpec } from "../src/serve/probes.js";

test("probe specs: DIR, DIR:annotate=…, DIR:block=…, NAME=DIR…", () => {
  assert.deepEqual(parseProbeSpec("probes/safety"), { dir: "probes/safety" });
  assert.deepEqual(parseProbeSpec("probes/safety:block=unsafe,toxic"), { dir: "probes/safety", policy: "block", labels: ["unsafe", "toxic"] });
  assert.deepEqual(parseProbeSpec("probes/s:annotate"), { dir: "probes/s", policy: "annotate" });
  assert.deepEqual(parseProbeSpec("guard=probes/s:annotate=toxic"), { dir: "probes/s", name: "guard", policy: "annotate", labels: ["toxic"] });
  assert.throws(() => parseProbeSpec("probes/s:block"), (e) => e instanceof InvalidArgumentError && /block needs the labels/.test(e.message));
});

test("admission: concurrency 1 + queue 1; the third request is refused with Retry-After; an aborted waiter leaves the queue", async () => {
  const depths: number[] = [];
  const a = new Admission(1, 1, (_r, w) => depths.push(w));
  const r1 = await a.acquire();
  const p2 = a.acquire();
  await assert.rejects(a.acquire(), (e) => e instanceof QueueFullError && e.status === 429 && e.retryAfterS >= 1);
  r1();
  const r2 = await p2;
  const ac = new AbortController();
  const p3 = a.acquire(ac.signal);
  assert.equal(a.depth, 1);
  ac.abort(new Error("client gone"));
  await assert.rejects(p3, /client gone/);
  assert.equal(a.depth, 0);
  r2();
  assert.equal(a.active, 0);
  a.close();
  await assert.rejects(a.acquire(), (e) => e instanceof ShuttingDownError && e.status === 503);
  assert.ok(depths.includes(1));
});

test("library errors become OpenAI error bodies naming the field", () => {
  assert.deepEqual(errorBody(toServeError(new InvalidArgumentError("temperature must be ≥ 0", { field: "temperature" }))), {
    error: { message: "field temperature: temperature must be ≥ 0", type: "invalid_request_error", param: "temperature", code: "invalid_value" },
  });
  const overflow = toServeError(new ContextOverflowError("too long", { field: "context_length" }));
  assert.equal(overflow.status, 400);
  assert.equal(errorBody(overflow).error.code, "context_length_exceeded");
  assert.equal(toServeError(new Error("boom")).status, 500);
});
