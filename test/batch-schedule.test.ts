// The continuous-batching scheduler's fill policy, on a session that only records what it is asked to run:
// prompt tokens between two decode steps stay within prefillChunk, short prompts that arrive together are all
// prefilled before the next step (so every request is in it), and a long prompt's pieces alternate with steps.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BatchScheduler } from "../src/engine/batch.js";
import type { BatchDecoder, DecoderSession, ForwardPass, SequenceHandle } from "../src/engine/types.js";

const V = 4;

/** A session whose runs log "P<tokens>" (a prompt piece) or "D<rows>" (a decode step) and return at once. */
function recordingSession(): { session: DecoderSession & { batch: BatchDecoder }; log: string[] } {
  const log: string[] = [];
  const pass = (): ForwardPass => ({ logits: new Float32Array(V), positions: 1, runMs: 0 }); // [1, V]
  const tick = () => new Promise((r) => setTimeout(r, 1)); // a run takes time: requests queue meanwhile
  const batch: BatchDecoder = {
    openSequence: () => ({ length: 0, closed: false }) as SequenceHandle,
    closeSequence: () => {},
    forwardSequence: async (_seq, tokens) => {
      log.push(`P${tokens.length}`);
      await tick();
      return pass();
    },
    decodeStep: async (seqs) => {
      log.push(`D${seqs.length}`);
      await tick();
      return seqs.map(pass);
    },
  };
  const session = {
    vocabSize: V,
    contextLength: 4096,
    pastLength: 0,
    hasTaps: false,
    forward: () => Promise.reject(new Error("not used")),
    reset: () => {},
    truncate: () => {},
    dispose: async () => {},
    batch,
  };
  return { session, log };
}

/** A request: prefill `promptLength` tokens, then `steps` decode calls, each as soon as the previous returns. */
async function request(s: BatchScheduler, promptLength: number, steps: number): Promise<void> {
  const r = s.runner();
  await r.prefill(new Array<number>(promptLength).fill(1), {});
  for (let i = 0; i < steps; i++) await r.decode(1);
  r.close();
}

/** Prompt tokens run in each gap between decode steps (before the first, between each two, after the last). */
function gaps(log: string[]): number[] {
  const out = [0];
  for (const e of log) {
    if (e.startsWith("D")) out.push(0);
    else out[out.length - 1] += Number(e.slice(1));
  }
  return out;
}

test("short prompts arriving together are all prefilled before the next decode step, and every step carries them all", async () => {
  const { session, log } = recordingSession();
  const s = new BatchScheduler(session, { prefillChunk: 256 });
  await Promise.all(Array.from({ length: 8 }, () => request(s, 32, 5)));
  const firstStep = log.findIndex((e) => e.startsWith("D"));
  assert.deepEqual(log.slice(0, firstStep), new Array(8).fill("P32"), log.join(" "));
  assert.deepEqual(log.slice(firstStep), new Array(5).fill("D8"), log.join(" "));
  assert.equal(s.stats.decodeRows / s.stats.decodeRuns, 8);
});

test("running requests wait at most prefillChunk prompt tokens per step: a long prompt in pieces, short ones packed up to the budget", async () => {
  const { session, log } = recordingSession();
  const s = new BatchScheduler(session, { prefillChunk: 100 });
  const running = request(s, 10, 30); // decoding while the others arrive
  await new Promise((r) => setTimeout(r, 5));
  await Promise.all([running, request(s, 250, 2), request(s, 40, 2), request(s, 40, 2), request(s, 40, 2)]);
  // every gap between two decode steps holds at most 100 prompt tokens, and the 250-token prompt ran in pieces
  const between = gaps(log).slice(1, -1);
  assert.ok(between.every((n) => n <= 100), `prompt tokens between steps: ${between.join(" ")} (${log.join(" ")})`);
  assert.deepEqual(log.filter((e) => e === "P100" || e === "P50"), ["P100", "P100", "P50"], log.join(" "));
  // two 40-token prompts fit one gap of 100: some gap holds 80
  assert.ok(between.includes(80), `40-token prompts packed two per gap: ${between.join(" ")} (${log.join(" ")})`);
  // every piece of every prompt ran once
  assert.equal(log.filter((e) => e.startsWith("P")).length, 1 + 3 + 3);
});

test("a prompt with nothing else waiting goes to the session in one call; pieces once another request runs", async () => {
  const { session, log } = recordingSession();
  const s = new BatchScheduler(session, { prefillChunk: 100 });
  await request(s, 250, 1);
  assert.deepEqual(log, ["P250", "D1"]);
  log.length = 0;
  const running = request(s, 10, 20);
  await new Promise((r) => setTimeout(r, 5));
  await Promise.all([running, request(s, 250, 1)]);
  assert.deepEqual(log.filter((e) => e.startsWith("P")), ["P10", "P100", "P100", "P50"], log.join(" "));
});
