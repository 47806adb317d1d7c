// Response probes per sequence in batched decoding: four concurrent requests, each with its own response probes,
// decode together through the Engine's batch scheduler (one ORT run per step for all of them; the decode steps
// hand each request its own row of the hidden states [L+1, B, 1, d]). Each request's readings equal the same
// request run alone (≤ 1e-5), and a blocking probe that stops one request leaves the others' tokens unchanged.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Engine, type GenerateRequest } from "../src/engine/engine.js";
import type { LoadedProbe } from "../src/probe/artifact.js";
import { generateWithProbes, type ResponseReading } from "../src/probe/live.js";
import { Probe, type ProbeConfig } from "../src/probe/probe.js";
import { Rng } from "../src/numeric/rng.js";
import { STORIES260K, maxAbsDiff } from "./helpers.js";

let engine: Engine;
before(async () => {
  engine = await Engine.load(STORIES260K, { taps: true, threads: 2 });
});
after(async () => {
  await engine?.dispose();
});

const PROMPTS = ["Once upon a time", "Lily went to the park with her mom", "Tom had a big dog", "The sun was hot"];
const MAX = 24;
/** Each request's annotating probes (random weights of order 1/√d: readings that move). */
const CONFIGS: ProbeConfig[] = [{ kind: "pooling", pool: "mean" }, { kind: "scoring" }, { kind: "fixed", token: "mean", layer: 2 }, { kind: "mha", heads: 2, downcast: 4 }];

function loaded(probe: Probe, name: string, labelNames: string[], threshold?: number): LoadedProbe {
  const { layers, dim } = probe.shape;
  return {
    probe, dir: name,
    meta: {
      format: "onepass-probe", version: 1, config: probe.config, shape: probe.shape, labelNames, ...(threshold !== undefined ? { threshold } : {}),
      model: { fingerprint: engine.fingerprint, blocks: layers - 1, dim },
      parameterCount: { aggregator: probe.parameterCount(), head: probe.headWeight.size + probe.headBias.size }, createdAt: new Date(0).toISOString(),
      tokenization: { addBos: true, template: "raw", maxTokens: null, target: "response" },
    },
  } as LoadedProbe;
}

function randomProbes(seed: number): Record<string, LoadedProbe> {
  const L1 = engine.spec.blocks + 1, d = engine.spec.dim;
  const out: Record<string, LoadedProbe> = {};
  CONFIGS.forEach((config, i) => {
    const p = new Probe(config, { layers: L1, dim: d, classes: 3 }, { seed: seed + i });
    const rng = new Rng(seed * 10 + i);
    for (const t of p.params().values()) for (let j = 0; j < t.data.length; j++) t.data[j] = (rng.normal() * 0.4) / Math.sqrt(d);
    out[`${config.kind}`] = loaded(p, `${config.kind}`, ["a", "b", "c"]);
  });
  return out;
}

interface Run {
  tokens: number[];
  finishReason: string;
  history: ResponseReading[];
}

function start(k: number, probes: Record<string, LoadedProbe>, block: string[] | undefined): { done: Promise<Run>; streamed: number[] } {
  const request: GenerateRequest = { prompt: PROMPTS[k], maxTokens: MAX, temperature: 0.8, seed: 40 + k, eosTokenIds: [] };
  const { generation, responseHistory } = generateWithProbes(engine, request, [], {
    response: { probes, policy: block !== undefined ? { block } : "annotate", every: 4 },
  });
  const streamed: number[] = [];
  const done = (async () => {
    for await (const ch of generation) if (ch.token !== null) streamed.push(ch.token);
    const r = await generation.result;
    return { tokens: r.tokens, finishReason: r.finishReason, history: responseHistory! };
  })();
  return { done, streamed };
}

/** A fixed last-token probe that flags exactly one generated token of `states` (each [L+1, d]): the one scoring highest against the 6th token's final layer. */
function plantedProbe(states: Float32Array[]): { probe: LoadedProbe; at: number } {
  const L1 = engine.spec.blocks + 1, d = engine.spec.dim;
  const probe = new Probe({ kind: "fixed", layer: L1 - 1, token: "last" }, { layers: L1, dim: d, classes: 2 });
  const w = states[5].slice((L1 - 1) * d, L1 * d); // [d]
  const scores = states.map((s) => s.subarray((L1 - 1) * d).reduce((acc, v, j) => acc + v * w[j], 0));
  const order = scores.map((_, i) => i).sort((a, b) => scores[b] - scores[a]);
  const mid = (scores[order[0]] + scores[order[1]]) / 2, scale = 20 / (scores[order[0]] - scores[order[1]]);
  for (let j = 0; j < d; j++) probe.headWeight.data[j * 2 + 1] = scale * w[j];
  probe.headBias.data[1] = -scale * mid;
  return { probe: loaded(probe, "harm", ["safe", "unsafe"], 0.5), at: order[0] };
}

function compare(what: string, got: ResponseReading[], want: ResponseReading[]): number {
  assert.equal(got.length, want.length, `${what}: ${got.length} readings, alone ${want.length}`);
  let worst = 0;
  got.forEach((r, i) => {
    const w = want[i];
    assert.deepEqual([r.probe, r.tokens, r.token, r.label, r.blocks], [w.probe, w.tokens, w.token, w.label, w.blocks], `${what} reading ${i}`);
    worst = Math.max(worst, maxAbsDiff(Object.values(r.probabilities), Object.values(w.probabilities)));
    if (w.layerWeights !== undefined) worst = Math.max(worst, maxAbsDiff(r.layerWeights!, w.layerWeights));
  });
  return worst;
}

test("four concurrent requests with response probes decode in one batch: readings = each alone (≤ 1e-5); stopping one leaves the others' tokens unchanged", async () => {
  assert.ok(engine.batched, "the built-in model's graph batches");
  const probes = PROMPTS.map((_, k) => randomProbes(100 + 10 * k));
  // request 0's answer alone, to plant a blocking probe on one of its tokens
  const states: Float32Array[] = [];
  await engine.generate({ prompt: PROMPTS[0], maxTokens: MAX, temperature: 0.8, seed: 40, eosTokenIds: [], onDecodeStep: ({ pass }) => void states.push(pass.hidden!.data.slice()) }).result;
  const planted = plantedProbe(states);
  const withHarm = { ...probes[0], harm: planted.probe };

  // alone, one after the other: request 0 with and without the blocking probe, the others annotating
  const alone: Run[] = [];
  for (let k = 0; k < PROMPTS.length; k++) alone.push(await start(k, probes[k], undefined).done);
  const aloneStopped = await start(0, withHarm, ["harm:unsafe"]).done;
  assert.equal(aloneStopped.finishReason, "content_filter");
  assert.equal(aloneStopped.tokens.length, planted.at);
  assert.deepEqual(aloneStopped.tokens, alone[0].tokens.slice(0, planted.at));
  for (const r of alone) assert.deepEqual([r.tokens.length, r.finishReason], [MAX, "length"]);

  // together: all four start at once (request 0 with the blocking probe), so their decode steps share runs
  const before = engine.batchStats;
  const runs = PROMPTS.map((_, k) => start(k, k === 0 ? withHarm : probes[k], k === 0 ? ["harm:unsafe"] : undefined));
  const together = await Promise.all(runs.map((r) => r.done));
  const after = engine.batchStats;
  const rows = after.decodeRows - before.decodeRows, steps = after.decodeRuns - before.decodeRuns;
  // 3 × 24 + (at + 1) token runs; batched, far fewer steps than runs
  assert.equal(rows, 3 * MAX + planted.at + 1);
  assert.ok(rows / steps > 2, `mean batch ${(rows / steps).toFixed(2)} (${rows} rows in ${steps} steps): the requests did not decode together`);

  let worst = compare("request 0 (stopped)", together[0].history, aloneStopped.history);
  assert.equal(together[0].finishReason, "content_filter");
  assert.deepEqual(together[0].tokens, aloneStopped.tokens);
  assert.deepEqual(runs[0].streamed, aloneStopped.tokens, "the flagged token is not streamed");
  for (let k = 1; k < PROMPTS.length; k++) {
    assert.deepEqual(together[k].tokens, alone[k].tokens, `request ${k}: tokens changed by the batch or by request 0's stop`);
    assert.equal(together[k].finishReason, "length");
    worst = Math.max(worst, compare(`request ${k}`, together[k].history, alone[k].history));
    // every probe read every token (MHA every 4 and at the first)
    assert.equal(together[k].history.length, MAX * 3 + (1 + MAX / 4));
  }
  assert.ok(worst <= 1e-5, `batched readings differ from alone by ${worst}`);
  // the comparison has teeth: readings move token by token and differ between requests
  const pooled = (r: Run) => r.history.filter((h) => h.probe === "pooling").map((h) => h.probabilities.a);
  assert.ok(new Set(pooled(together[1]).map((p) => p.toFixed(4))).size > 5);
  assert.ok(maxAbsDiff(pooled(together[1]), pooled(together[2])) > 1e-3);
  console.log(`# 4 requests × ${CONFIGS.length} response probes, batched: ${rows} token runs in ${steps} steps; readings vs alone ≤ ${worst.toExponential(2)}; request 0 stopped after ${planted.at} tokens`);
});
