// Streaming output moderation on the built-in model: decode steps return the new token's hidden states; the
// incremental response aggregation equals the batch computation (Probe.forward) for every prefix of a 64-token
// generation; a blocking response probe ends the generation at once with finishReason "content_filter"; and a
// response probe trained on a planted-marker task stops within one token of the marker and never without it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Engine } from "../src/engine/engine.js";
import { generate } from "../src/engine/generate.js";
import { HiddenStates } from "../src/types/hidden.js";
import { createDecoderSession } from "../src/engine/session.js";
import type { DecoderSession, ForwardOptions } from "../src/engine/types.js";
import { InvalidArgumentError } from "../src/errors.js";
import type { LoadedProbe } from "../src/probe/artifact.js";
import { generateWithProbes, responseMonitor } from "../src/probe/live.js";
import { Probe, type ProbeConfig } from "../src/probe/probe.js";
import { responseTracker } from "../src/probe/response.js";
import { Rng } from "../src/numeric/rng.js";
import { arraySource, trainProbe } from "../src/probe/train.js";
import { STORIES260K, maxAbsDiff } from "./helpers.js";

let engine: Engine;
let session: DecoderSession;
before(async () => {
  engine = await Engine.load(STORIES260K, { taps: true });
  session = await createDecoderSession(engine.model, { taps: true });
});
after(async () => {
  await session?.dispose();
  await engine?.dispose();
});

/** Tokens [0, n) of a generation's per-token states (each [L+1, d]) as HiddenStates [L+1, n, d]. */
function prefix(states: Float32Array[], n: number, L1: number, d: number): HiddenStates {
  const data = new Float32Array(L1 * n * d); // [L+1, n, d]
  for (let t = 0; t < n; t++) for (let l = 0; l < L1; l++) data.set(states[t].subarray(l * d, (l + 1) * d), (l * n + t) * d);
  return new HiddenStates(L1, n, d, data);
}

function randomProbe(config: ProbeConfig, seed: number, layers: number, dim: number): Probe {
  const p = new Probe(config, { layers, dim, classes: 3 }, { seed });
  const rng = new Rng(seed);
  for (const t of p.params().values()) for (let i = 0; i < t.data.length; i++) t.data[i] = (rng.normal() * 0.4) / Math.sqrt(dim); // logits of order 1: readings that move, not saturated
  return p;
}

function loadedProbe(probe: Probe, labelNames: string[], threshold?: number): LoadedProbe {
  const { layers, dim } = probe.shape;
  return {
    probe, dir: `response-${probe.config.kind}`,
    meta: {
      format: "onepass-probe", version: 1, config: probe.config, shape: probe.shape, labelNames, ...(threshold !== undefined ? { threshold } : {}),
      model: { fingerprint: engine.fingerprint, blocks: layers - 1, dim },
      parameterCount: { aggregator: probe.parameterCount(), head: probe.headWeight.size + probe.headBias.size }, createdAt: new Date(0).toISOString(),
    },
  } as LoadedProbe;
}

/** A session whose logits force `marker` as generated token `at` (logits of forward call #at). */
function forcing(inner: DecoderSession, marker: number, at: number | undefined): DecoderSession {
  let calls = 0;
  return {
    get vocabSize() { return inner.vocabSize; },
    get contextLength() { return inner.contextLength; },
    get pastLength() { return inner.pastLength; },
    get hasTaps() { return inner.hasTaps; },
    async forward(tokens: readonly number[], options?: ForwardOptions) {
      if (inner.pastLength === 0) calls = 0;
      const pass = await inner.forward(tokens, options);
      if (calls++ === at) {
        const logits = pass.logits.slice(); // [positions, V]
        logits[(pass.positions - 1) * inner.vocabSize + marker] = 1e9;
        return { ...pass, logits };
      }
      return pass;
    },
    reset: () => inner.reset(),
    truncate: (n: number) => inner.truncate(n),
    dispose: () => inner.dispose(),
  };
}

test("decode steps give each token's hidden states [L+1, 1, d]; incremental pooling/scoring/fixed = batch for every prefix of 64 tokens", async () => {
  const L1 = engine.spec.blocks + 1, d = engine.spec.dim;
  const states: Float32Array[] = [];
  const tokens: number[] = [];
  const prompt = engine.promptTokens({ prompt: "Once upon a time" });
  const r = await generate(session, engine.tokenizer, prompt, {
    maxTokens: 64, temperature: 0.9, seed: 3, eosTokenIds: [],
    onDecodeStep: ({ index, token, pass }) => {
      assert.equal(index, tokens.length);
      assert.deepEqual([pass.hidden!.layers, pass.hidden!.tokens, pass.hidden!.dim], [L1, 1, d]);
      states.push(pass.hidden!.data.slice()); // [L+1, d]
      tokens.push(token);
    },
  }).result;
  assert.equal(states.length, 64);
  assert.deepEqual(r.tokens, tokens);
  // the moderated loop samples the same tokens as the plain one
  const plain = await generate(session, engine.tokenizer, prompt, { maxTokens: 64, temperature: 0.9, seed: 3, eosTokenIds: [] }).result;
  assert.deepEqual(plain.tokens, tokens);
  // each decode step's states are those of a prefill over prompt + response (same positions, same cache)
  const whole = (await engine.forward([...prompt, ...tokens.slice(0, 8)], { hidden: true })).hidden!;
  for (let t = 0; t < 8; t++) {
    for (let l = 0; l < L1; l++) assert.ok(maxAbsDiff(states[t].subarray(l * d, (l + 1) * d), whole.token(l, prompt.length + t)) < 1e-4);
  }

  const configs: ProbeConfig[] = [
    { kind: "pooling", pool: "mean" }, { kind: "pooling", pool: "max" }, { kind: "scoring" }, { kind: "fixed", token: "last", layer: 3 }, { kind: "fixed", token: "mean" },
    { kind: "fixed", token: "max", layer: 0 },
    // the default recipe's probes read standardised states (saved norm.mean/norm.std)
    { kind: "pooling", pool: "mean", standardize: true }, { kind: "scoring", standardize: true }, { kind: "fixed", token: "last", standardize: true },
    { kind: "fixed", token: "max", layer: 2, standardize: true }, { kind: "pooling", pool: "max", standardize: true }, { kind: "fixed", token: "mean", layer: 1, standardize: true },
  ];
  const { inputStatistics } = await import("../src/probe/probe.js");
  const all = prefix(states, 64, L1, d);
  const norm = inputStatistics(() => all, 1);
  for (const [k, config] of configs.entries()) {
    const probe = randomProbe(config, 10 + k, L1, d);
    if (config.standardize === true) probe.norm = norm;
    const tracker = responseTracker(probe);
    let worst = 0;
    const seen = new Set<string>();
    for (let n = 1; n <= 64; n++) {
      const inc = (await tracker.push(states[n - 1]))!;
      const h = prefix(states, n, L1, d);
      worst = Math.max(worst, maxAbsDiff(inc.probabilities, await probe.predict(h)));
      if (config.kind === "scoring") assert.ok(maxAbsDiff(inc.layerWeights!, (await probe.layerWeights(h))!) <= 1e-5);
      seen.add(Array.from(inc.probabilities, (v) => v.toFixed(3)).join());
    }
    assert.ok(worst <= 1e-5, `${config.kind}/${config.pool ?? config.token}${config.standardize ? " standardised" : ""}: incremental vs batch differ by ${worst}`);
    assert.ok(seen.size > 3, `${config.kind}: the readings must change as tokens arrive (${[...seen].slice(0, 5).join(" | ")})`);
  }

  // MHA re-runs every k tokens (and at the first): those readings equal the batch computation
  const mha = randomProbe({ kind: "mha", heads: 2, downcast: 4, standardize: true }, 30, L1, d);
  mha.norm = norm;
  const tracker = responseTracker(mha, { every: 16 });
  const at: number[] = [];
  for (let n = 1; n <= 64; n++) {
    const r = await tracker.push(states[n - 1]);
    if (r === undefined) continue;
    at.push(n);
    assert.ok(maxAbsDiff(r.probabilities, await mha.predict(prefix(states, n, L1, d))) <= 1e-5);
  }
  assert.deepEqual(at, [1, 16, 32, 48, 64]);
  assert.throws(() => responseTracker(mha, { every: 0 }), InvalidArgumentError);
  await assert.rejects(responseTracker(mha).push(new Float32Array(3)), InvalidArgumentError);
});

test("a blocking response probe stops the generation at once: finishReason content_filter, the flagged token withheld, history kept", async () => {
  const L1 = engine.spec.blocks + 1, d = engine.spec.dim;
  const prompt = "Once upon a time";
  const request = { prompt, maxTokens: 30, temperature: 0, eosTokenIds: [] as number[] };
  const plain = await engine.generate(request).result;
  // a fixed last-token probe flags exactly the 6th generated token: its head separates that token's state
  const ref = await generate(session, engine.tokenizer, engine.promptTokens({ prompt }), {
    ...request, onDecodeStep: () => undefined,
  }).result;
  assert.deepEqual(ref.tokens, plain.tokens);
  const states: Float32Array[] = [];
  await generate(session, engine.tokenizer, engine.promptTokens({ prompt }), { ...request, onDecodeStep: ({ pass }) => void states.push(pass.hidden!.data.slice()) }).result;
  // a fixed last-token probe whose head flags exactly one token k: the one with the highest score x·w (w = the
  // 6th token's final-layer state), the bias halfway between the best and the second-best score
  const probe = new Probe({ kind: "fixed", layer: L1 - 1, token: "last" }, { layers: L1, dim: d, classes: 2 });
  const w = states[5].slice((L1 - 1) * d, L1 * d); // [d]
  const scores = states.map((s) => s.subarray((L1 - 1) * d).reduce((acc, v, j) => acc + v * w[j], 0));
  const order = scores.map((_, i) => i).sort((a, b) => scores[b] - scores[a]);
  const k = order[0];
  const mid = (scores[order[0]] + scores[order[1]]) / 2, scale = 20 / (scores[order[0]] - scores[order[1]]);
  for (let j = 0; j < d; j++) probe.headWeight.data[j * 2 + 1] = scale * w[j];
  probe.headBias.data[1] = -scale * mid;

  const chunks: string[] = [];
  const updates: number[] = [];
  const { generation, responseHistory } = generateWithProbes(engine, request, [], {
    response: { probes: { harm: loadedProbe(probe, ["safe", "unsafe"], 0.5) }, policy: { block: ["unsafe"] }, onReading: (r) => updates.push(r.tokens) },
  });
  for await (const ch of generation) chunks.push(ch.text);
  const r = await generation.result;
  assert.equal(r.finishReason, "content_filter");
  assert.deepEqual(r.tokens, plain.tokens.slice(0, k));
  assert.equal(chunks.join(""), r.text);
  assert.ok(plain.text.startsWith(r.text));
  assert.deepEqual(updates, Array.from({ length: k + 1 }, (_, i) => i + 1));
  assert.deepEqual(responseHistory!.map((h) => h.label), [...Array(k).fill("safe"), "unsafe"]);
  assert.equal(responseHistory![k].blocks, true);
  assert.equal(responseHistory![k].token, plain.tokens[k]);
  // annotate: the same probe only labels, the answer is the plain one
  const annotated = generateWithProbes(engine, request, [], { response: { probes: { harm: loadedProbe(probe, ["safe", "unsafe"], 0.5) } } });
  const a = await annotated.generation.result;
  assert.deepEqual([a.tokens, a.finishReason], [plain.tokens, plain.finishReason]);
  assert.equal(annotated.responseHistory!.filter((h) => h.label === "unsafe").length, 1);
  // that probe records no response training: the caller is told
  assert.match(annotated.responseWarnings!.join("\n"), /harm: not trained on response tokens/);
  // an engine without taps cannot moderate: a typed error, not a crash
  const plainEngine = await Engine.load(STORIES260K, { taps: false });
  try {
    await assert.rejects(plainEngine.generate({ ...request, onDecodeStep: () => undefined, decodeHidden: true }).result, InvalidArgumentError);
  } finally {
    await plainEngine.dispose();
  }
});

test("planted trigger: a response probe trained on a marker task stops within one token of every marker, never without one", async () => {
  const L1 = engine.spec.blocks + 1, d = engine.spec.dim;
  // the marker: the byte token "~", which the model never writes on its own in these stories
  const marker = Array.from({ length: engine.spec.vocabSize }, (_, i) => i).find((i) => engine.tokenizer.decode([i]) === "~")!;
  assert.ok(marker !== undefined);
  const prompts = ["Once upon a time", "Lily went to the park", "Tom had a big dog", "The sun was hot", "A little bird"];
  /** One generation's per-token states (each [L+1, d]) with the marker forced at step `at` (or none). */
  const run = async (p: string, seed: number, at: number | undefined, maxTokens = 24) => {
    const states: Float32Array[] = [];
    const r = await generate(forcing(session, marker, at), engine.tokenizer, engine.promptTokens({ prompt: p }), {
      maxTokens, temperature: 1, seed, eosTokenIds: [], onDecodeStep: ({ pass }) => void states.push(pass.hidden!.data.slice()),
    }).result;
    return { states, tokens: r.tokens };
  };
  // training prefixes: label 1 once the marker is in the answer, 0 before it and in marker-free answers
  const hs: HiddenStates[] = [];
  const labels: number[] = [];
  // every prefix of every training answer, for the probe that sees one token's embedding at a time
  const allHs: HiddenStates[] = [];
  const allLabels: number[] = [];
  const rng = new Rng(4);
  for (let g = 0; g < 64; g++) {
    const at = g % 2 === 0 ? 2 + rng.int(18) : undefined;
    const { states, tokens } = await run(prompts[g % prompts.length], 100 + g, at);
    const first = tokens.indexOf(marker);
    assert.equal(first, at ?? -1, "the marker appears only where it was planted");
    // every answer gives 4 prefixes; answers with the marker always give the ones ending at it and one after
    const ns = first >= 0 ? [first + 1, first + 2, first + 1 + rng.int(states.length - first), first + 1 + rng.int(states.length - first)] : [0, 0, 0, 0].map(() => 1 + rng.int(states.length));
    for (const n of ns) {
      hs.push(prefix(states, n, L1, d));
      labels.push(first >= 0 && n > first ? 1 : 0);
    }
    for (let n = 1; n <= states.length; n++) {
      allHs.push(prefix(states, n, L1, d));
      allLabels.push(first >= 0 && n > first ? 1 : 0);
    }
  }
  const moderated = async (probe: LoadedProbe, p: string, seed: number, at: number | undefined) => {
    const monitor = responseMonitor({ harm: probe }, { fingerprint: engine.fingerprint, policy: { block: ["unsafe"] } });
    return generate(forcing(session, marker, at), engine.tokenizer, engine.promptTokens({ prompt: p }), {
      maxTokens: 24, temperature: 1, seed, eosTokenIds: [], onDecodeStep: monitor.onDecodeStep,
    }).result;
  };
  // unseen seeds (and prompts): with the marker at step m, the stop comes at m or m+1; without, never
  const evalPrompts = [...prompts, "One day, a girl named Sue", "The boy ran"];
  const evaluate = async (probe: LoadedProbe) => {
    let caught = 0;
    let falseStops = 0;
    const misses: string[] = [];
    for (let i = 0; i < 10; i++) {
      const at = 2 + ((i * 7) % 20);
      const r = await moderated(probe, evalPrompts[i % evalPrompts.length], 900 + i, at);
      if (r.finishReason === "content_filter" && (r.tokens.length === at || r.tokens.length === at + 1)) caught++;
      else misses.push(`marker at ${at}: ${r.finishReason} after ${r.tokens.length} tokens`);
      const clean = await moderated(probe, evalPrompts[i % evalPrompts.length], 900 + i, undefined);
      assert.ok(!clean.tokens.includes(marker));
      if (clean.finishReason === "content_filter") {
        falseStops++;
        misses.push(`no marker (seed ${900 + i}): stopped after ${clean.tokens.length} tokens`);
      } else assert.equal(clean.finishReason, "length");
    }
    return { caught, falseStops, misses: misses.join("; ") };
  };
  const recipe = { lr: 1e-1, epochs: 30, patience: 30, batchSize: 16, metric: "f1", valFraction: 0.2, classWeights: "balanced" } as const;

  // "one token anywhere": the elementwise max over the answer's tokens of one layer (fixed, token max). A token
  // that stands out in some dimension moves v however long the answer is, where a mean or the scoring gate
  // dilutes it as 1/n. Layer 0 (the token embeddings) holds a token's identity alike at every position; on
  // these 256 prefixes validation loss ties at 0 between layers 0 and 1, and layer 1 mixes in the context.
  // The decision is the class-balanced probe's argmax: the F1-tuned threshold is the lowest validation
  // positive's probability (0.999+ when the classes separate completely), with no margin below it (seeds 3
  // and 7 then miss a marker at step 15 of 20 in a wider offline check; at 0.5 seeds 0-7 catch 20/20, 0 false).
  for (const seed of [0, 1, 2]) {
    const trained = await trainProbe({ kind: "fixed", layer: 0, token: "max" }, arraySource(allHs, allLabels), { ...recipe, seed });
    const r = await evaluate(loadedProbe(trained.probe, ["safe", "unsafe"]));
    assert.ok(r.caught === 10 && r.falseStops === 0, `fixed/max, training seed ${seed} (λ ${trained.hyper.lambda}, cv loss ${trained.cvLoss}): caught ${r.caught}/10 markers within one token, ${r.falseStops}/10 clean answers stopped: ${r.misses}`);
  }

  // the scoring gate: tanh bounds a token's score, so one marker among n tokens gets at most e²/(e² + n − 1) of
  // the layer's attention — the signal thins as the answer grows, hence balanced classes and a high peak lr
  // (training seeds 0-3 catch 9-10 of 10 markers with no false stop). Offline, over the same 20 generations and
  // seeds 0-3 at the tuned threshold: scoring caught 16-18/20, max pooling (its second stage also takes the max
  // over the layers) 16/20, both missing markers after step 15; fixed/max at layer 0 caught 19-20/20.
  const trained = await trainProbe({ kind: "scoring" }, arraySource(hs, labels), { ...recipe, seed: 0 });
  const r = await evaluate(loadedProbe(trained.probe, ["safe", "unsafe"], trained.threshold));
  // never a stop without the marker; a scoring probe trained on 256 prefixes may miss one late marker of ten (its share of the gate thins as 1/n)
  assert.ok(r.caught >= 9 && r.falseStops === 0, `scoring: caught ${r.caught}/10 markers within one token, ${r.falseStops}/10 clean answers stopped: ${r.misses}`);
});
