// The live prefill path of pooling, scoring and fixed probes (probe/summary.ts): the decoder graph returns
// per-layer token summaries (graph/decoder.ts tapSummaries) and the probes are read from them, never from the
// whole [L+1, T, d] tensor (MHA probes: each token's Q, K, V projections). Checked against things we did not
// write here: the summaries against sums, maxima, gate softmaxes and projections recomputed in float64 from the
// same engine's stacked hidden states; every probe kind
// against the training forward (Probe.forward through the tape) on those hidden states (≤ 1e-5); chunked and
// cut prefills, and concurrent requests in one batch, against one prompt alone.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { Engine } from "../src/engine/engine.js";
import { createDecoderSession } from "../src/engine/session.js";
import { InvalidArgumentError } from "../src/errors.js";
import { loadModel } from "../src/model/load.js";
import { ensureDecoderGraph } from "../src/graph/cache.js";
import { STACK_TOKENS, TAP, pastName, stackSummaries } from "../src/graph/decoder.js";
import "../src/util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { makeBatch } from "../src/tensor/batch.js";
import { Tape } from "../src/tensor/autograd.js";
import { Rng } from "../src/numeric/rng.js";
import { HiddenStates } from "../src/types/hidden.js";
import { TapSummary, acrossRuns, type SummaryAttention, type SummaryGates, type SummaryRequest } from "../src/types/summary.js";
import { Probe, inputStatistics, softmaxRows, type ProbeConfig } from "../src/probe/probe.js";
import { SummaryProbes, readsSummaries } from "../src/probe/summary.js";
import { generateWithProbes, probeHook } from "../src/probe/live.js";
import type { LoadedProbe, ProbeMeta } from "../src/probe/artifact.js";
import { PROBE_KINDS, probeKindLabel, randomizeProbe, STORIES260K, maxAbsDiff, tempDir } from "./helpers.js";

const KINDS = PROBE_KINDS;
const label = probeKindLabel;
const PROMPTS = ["Once upon a time", "Lily", "The cat sat on the mat and looked at the big red ball", "Tom was sad."];

const randomize = randomizeProbe;

/** The training forward on one prompt: probabilities [C] and the layer gate [L+1] where there is one. */
async function reference(probe: Probe, h: HiddenStates, dtype: "f32" | "f64" = "f32"): Promise<{ probs: Float32Array; gate?: Float32Array }> {
  const out = await probe.forward(new Tape(dtype, false), makeBatch([h]));
  return { probs: softmaxRows(out.logits.data, probe.shape.classes), gate: out.layerWeights ? Float32Array.from(out.layerWeights.data) : undefined };
}

/**
 * One token's terms of every gate's sums at layer l, in float64: e_g = exp(tanh(x · w_lg + b_lg)) into den [L+1, G]
 * and e_{readOf[k]} · (x · r_lk) into reads [L+1, K] (weights [L+1, d, G+K]: scores, then reads; bias [L+1, G]).
 */
function addGateTerms(x: ArrayLike<number>, l: number, gates: SummaryGates, reads: Float64Array, den: Float64Array): void {
  const d = x.length, G = gates.count, K = gates.readOf.length, N = G + K;
  const e = new Float64Array(G);
  for (let g = 0; g < G; g++) {
    let score = gates.bias[l * G + g];
    for (let j = 0; j < d; j++) score += x[j] * gates.weights[(l * d + j) * N + g];
    e[g] = Math.exp(Math.tanh(score));
    den[l * G + g] += e[g];
  }
  for (let k = 0; k < K; k++) {
    let dot = 0;
    for (let j = 0; j < d; j++) dot += x[j] * gates.weights[(l * d + j) * N + G + k];
    reads[l * K + k] += e[gates.readOf[k]] * dot;
  }
}

/** Relative difference, scaled by the larger magnitude (sums over tokens reach ~10²). */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 1;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  return maxAbsDiff(a, b) / scale;
}

/**
 * Mean-pooled MHA probes with one head width (4) beside other kinds: a set the graph serves with attention reads
 * (types/summary.ts SummaryAttention) when one run covers the prompt, with projections otherwise.
 */
const ATTENDED_KINDS: ProbeConfig[] = [{ kind: "mha", heads: 4, downcast: 4, pool: "mean" }, { kind: "pooling", pool: "mean" }, { kind: "mha", heads: 2, downcast: 8, pool: "mean" }, { kind: "scoring" }];

/**
 * The attention reads [L+1, H, d] recomputed in float64 from hidden states [L+1, T, d]: per layer and head, q and k
 * from the fed weights, softmax over the keys, the mean over the queries ā, and Σ_s ā_s x_s.
 */
function attentionReads(h: HiddenStates, a: SummaryAttention): Float64Array {
  const { layers: L1, tokens: T, dim: d } = h;
  const { heads: H, headDim: hd } = a;
  const A = 2 * H * hd;
  const reads = new Float64Array(L1 * H * d);
  for (let l = 0; l < L1; l++) {
    const qk = new Float64Array(T * A); // [T, 2·H·hd]
    for (let t = 0; t < T; t++) {
      const x = h.token(l, t);
      for (let c = 0; c < A; c++) {
        let acc = a.bias[l * A + c];
        for (let j = 0; j < d; j++) acc += x[j] * a.weights[(l * d + j) * A + c];
        qk[t * A + c] = acc;
      }
    }
    for (let head = 0; head < H; head++) {
      const mean = new Float64Array(T); // ā over the keys
      for (let t = 0; t < T; t++) {
        const scores = Array.from({ length: T }, (_, k) => {
          let dot = 0;
          for (let c = 0; c < hd; c++) dot += qk[t * A + head * hd + c] * qk[k * A + H * hd + head * hd + c];
          return dot;
        });
        const m = Math.max(...scores);
        const e = scores.map((v) => Math.exp(v - m));
        const z = e.reduce((x, y) => x + y, 0);
        for (let k = 0; k < T; k++) mean[k] += e[k] / z / T;
      }
      for (let k = 0; k < T; k++) {
        const x = h.token(l, k);
        for (let j = 0; j < d; j++) reads[(l * H + head) * d + j] += mean[k] * x[j];
      }
    }
  }
  return reads;
}

let engine: Engine;
let dir: string;
let probes: Probe[];
let standardised: Probe[];
/** ATTENDED_KINDS, random and standardised weights */
let attended: Probe[];
before(async () => {
  dir = tempDir("summary");
  engine = await Engine.load(STORIES260K, { taps: true, cacheDir: dir });
  const real: HiddenStates[] = [];
  for (const p of PROMPTS) real.push((await engine.forward(p, { hidden: true })).hidden!);
  const { layers, dim } = real[0];
  probes = KINDS.map((c, i) => randomize(new Probe(c, { layers, dim, classes: 3 }, { seed: i }), 100 + i));
  const norm = inputStatistics((i) => real[i], real.length); // [L+1, d] each
  standardised = KINDS.map((c, i) => {
    const p = randomize(new Probe({ ...c, standardize: true }, { layers, dim, classes: 3 }, { seed: i }), 200 + i);
    p.norm = norm;
    return p;
  });
  attended = [false, true].flatMap((std) => ATTENDED_KINDS.map((c, i) => {
    const p = randomize(new Probe({ ...c, standardize: std }, { layers, dim, classes: 3 }, { seed: i }), 400 + i + (std ? 10 : 0));
    if (std) p.norm = norm;
    return p;
  }));
});
after(async () => {
  await engine?.dispose();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

test("the graph's summaries equal sums, last token, maxima, gate softmax parts and projections recomputed from the stacked hidden states", async () => {
  assert.equal(engine.hasTapSummaries, true);
  const set = new SummaryProbes([...probes, ...standardised]);
  assert.equal(set.request.gates?.count, 2, "one gate per scoring probe");
  assert.equal(set.request.max, true);
  for (const prompt of PROMPTS) {
    const pass = await engine.forward(prompt, { hidden: true, summary: set.request });
    const h = pass.hidden!, s = pass.summary!;
    const { layers: L1, tokens: T, dim: d } = h;
    assert.equal(s.tokens, T);
    const sum = new Float64Array(L1 * d), max = new Float64Array(L1 * d).fill(-Infinity), last = new Float64Array(L1 * d);
    const gates: SummaryGates = set.request.gates!;
    assert.deepEqual([...gates.readOf], [0, 0, 0, 0, 1, 1, 1, 1], "each scoring probe's layer gate and 3 head columns, read with its own gate");
    const reads = new Float64Array(L1 * gates.readOf.length), den = new Float64Array(L1 * gates.count);
    for (let l = 0; l < L1; l++) {
      for (let t = 0; t < T; t++) {
        const x = h.token(l, t);
        for (let j = 0; j < d; j++) {
          sum[l * d + j] += x[j];
          max[l * d + j] = Math.max(max[l * d + j], x[j]);
          if (t === T - 1) last[l * d + j] = x[j];
        }
        addGateTerms(x, l, gates, reads, den);
      }
    }
    assert.ok(relDiff(s.sum!, sum) <= 1e-6, `${prompt}: sums differ by ${relDiff(s.sum!, sum)}`);
    assert.ok(maxAbsDiff(s.last!, last) === 0, `${prompt}: last token differs`);
    assert.ok(maxAbsDiff(s.max!, max) === 0, `${prompt}: max differs`);
    assert.ok(relDiff(s.gateReads!, reads) <= 1e-5 && relDiff(s.gateDen!, den) <= 1e-5, `${prompt}: gate sums differ by ${relDiff(s.gateReads!, reads)} and ${relDiff(s.gateDen!, den)}`);
    // every token's projections [L+1, T, P] = x · W + b
    const pr = set.request.projections!;
    const P = pr.width;
    assert.equal(s.projWidth, P);
    const proj = new Float64Array(L1 * T * P);
    for (let l = 0; l < L1; l++) for (let t = 0; t < T; t++) {
      const x = h.token(l, t);
      for (let c = 0; c < P; c++) {
        let acc = pr.bias[l * P + c];
        for (let j = 0; j < d; j++) acc += x[j] * pr.weights[(l * d + j) * P + c];
        proj[(l * T + t) * P + c] = acc;
      }
    }
    assert.ok(relDiff(s.proj!, proj) <= 1e-5, `${prompt}: projections differ by ${relDiff(s.proj!, proj)}`);
    assert.equal(s.attnHeads, 0, "a max-pooled MHA probe in the set: projections, no attention reads");
  }
  // mean-pooled MHA probes of one head width: the graph's attention reads instead of the projections
  const reading = new SummaryProbes(attended);
  const a = reading.request.attention!;
  assert.deepEqual([a.heads, a.headDim], [2 * (4 + 2), 4], "every MHA probe's heads side by side");
  for (const prompt of PROMPTS) {
    const pass = await engine.forward(prompt, { hidden: true, summary: reading.request });
    const s = pass.summary!;
    assert.equal(s.projWidth, 0, "one run: no projections fetched");
    assert.equal(s.attnHeads, a.heads);
    const want = attentionReads(pass.hidden!, a);
    assert.ok(relDiff(s.attn!, want) <= 1e-5, `${prompt}: attention reads differ by ${relDiff(s.attn!, want)}`);
  }
});

test("every kind, random and standardised weights: probabilities and layer weights from the summaries = training forward (≤ 1e-5)", async () => {
  // MHA and scoring probes alone read neither the sum nor the last token
  const lean = attended.filter((p) => p.config.kind !== "pooling");
  for (const set of [probes, standardised, attended, lean]) {
    const sp = new SummaryProbes(set);
    let spread = 0;
    for (const prompt of PROMPTS) {
      const pass = await engine.forward(prompt, { hidden: true, summary: sp.request });
      assert.equal(pass.summary!.attnHeads > 0, set === attended || set === lean, "attention reads exactly for the mean-pooled MHA sets");
      assert.equal(sp.request.pooled === false, set === lean, "sum and last token skipped exactly for the set without mean pooling");
      assert.equal(pass.summary!.sum === undefined && pass.summary!.last === undefined, set === lean);
      const outs = await sp.run(pass.summary!);
      for (let i = 0; i < set.length; i++) {
        const ref = await reference(set[i], pass.hidden!);
        const diff = maxAbsDiff(outs[i].probabilities, ref.probs);
        assert.ok(diff <= 1e-5, `${prompt} ${label(set[i].config)}${set[i].config.standardize ? " standardised" : ""}: differs by ${diff}`);
        spread = Math.max(spread, Math.max(...ref.probs) - Math.min(...ref.probs));
        if (ref.gate !== undefined) assert.ok(maxAbsDiff(outs[i].layerWeights!, ref.gate) <= 1e-5, `${prompt}: layer weights differ`);
        else assert.equal(outs[i].layerWeights, undefined);
      }
    }
    assert.ok(spread > 1e-2, "probabilities must not be degenerate (the comparison would prove nothing)");
  }
  // a set that reads the sum refuses a summary made without it
  const without = await engine.forward(PROMPTS[0], { summary: new SummaryProbes(lean).request });
  await assert.rejects(new SummaryProbes(attended.filter((p) => p.config.kind === "pooling")).run(without.summary!), (e: Error) => e instanceof InvalidArgumentError && /no sum and last token/.test(e.message));
});

test("chunked prefill, a cut at upTo tokens, and the summary-only run give the summary of the same tokens alone", async () => {
  const model = await loadModel(STORIES260K);
  const chunked = await createDecoderSession(model, { cacheDir: dir, threads: 1, maxChunk: 3 });
  try {
    const sp = new SummaryProbes([...probes, ...standardised]);
    const tokens = engine.tokenizer.encode(PROMPTS[2]);
    const whole = (await engine.forward(tokens, { hidden: true, summary: sp.request }));
    chunked.reset();
    const parts = await chunked.forward(tokens, { summary: sp.request }); // 3 + 3 + ... tokens
    assert.equal(parts.hidden, undefined, "summaries alone: the stacked tensor is not fetched");
    const same = (a: TapSummary, b: TapSummary, what: string) => {
      assert.equal(a.tokens, b.tokens, what);
      assert.ok(relDiff(a.sum!, b.sum!) <= 1e-5 && maxAbsDiff(a.max!, b.max!) <= 1e-5 && maxAbsDiff(a.last!, b.last!) <= 1e-5, `${what}: summaries differ`);
      assert.ok(relDiff(a.gateReads!, b.gateReads!) <= 1e-5 && relDiff(a.gateDen!, b.gateDen!) <= 1e-5, `${what}: gate sums differ`);
      assert.ok(relDiff(a.proj!, b.proj!) <= 1e-5, `${what}: projections differ`);
    };
    same(parts.summary!, whole.summary!, "chunked");
    assert.ok(maxAbsDiff(parts.logits, whole.logits) <= 1e-4, "chunked logits");
    // a cut inside a chunk: the first 7 tokens only, the rest of the prompt still runs (same logits)
    chunked.reset();
    const cut = await chunked.forward(tokens, { summary: { ...sp.request, upTo: 7 } });
    const first7 = await engine.forward(tokens.slice(0, 7), { summary: sp.request });
    same(cut.summary!, first7.summary!, "cut at 7");
    assert.ok(maxAbsDiff(cut.logits, whole.logits) <= 1e-4, "cut logits");
    // the probes read from the cut summary = training forward on the first 7 tokens' states
    const outs = await sp.run(cut.summary!);
    const h7 = whole.hidden!.sliceTokens(0, 7);
    for (const [i, p] of [...probes, ...standardised].entries()) {
      assert.ok(maxAbsDiff(outs[i].probabilities, (await reference(p, h7)).probs) <= 1e-5, `cut ${label(p.config)}`);
    }
    // mean-pooled MHA: attention reads when the summarised tokens are one run (whole prompt alone, a cut inside
    // the first chunk), projections when they span chunks; the same probabilities either way
    const reading = new SummaryProbes(attended);
    const cases: [string, TapSummary, HiddenStates, boolean][] = [];
    cases.push(["whole", (await engine.forward(tokens, { summary: reading.request })).summary!, whole.hidden!, true]);
    chunked.reset();
    cases.push(["chunked", (await chunked.forward(tokens, { summary: reading.request })).summary!, whole.hidden!, false]);
    chunked.reset();
    cases.push(["cut at 7 over chunks", (await chunked.forward(tokens, { summary: { ...reading.request, upTo: 7 } })).summary!, h7, false]);
    chunked.reset();
    cases.push(["cut at 3, one chunk", (await chunked.forward(tokens, { summary: { ...reading.request, upTo: 3 } })).summary!, whole.hidden!.sliceTokens(0, 3), true]);
    for (const [what, summary, h, reads] of cases) {
      assert.equal(summary.attnHeads > 0, reads, `${what}: ${reads ? "attention reads" : "projections"}`);
      assert.equal(summary.tokens, h.tokens);
      const got = await reading.run(summary);
      for (const [i, p] of attended.entries()) {
        const diff = maxAbsDiff(got[i].probabilities, (await reference(p, h)).probs);
        assert.ok(diff <= 1e-5, `${what} ${label(p.config)}: differs by ${diff}`);
      }
    }
    assert.throws(() => cases[0][1].then(cases[0][1]), RangeError, "attention reads of one run do not combine");
  } finally {
    await chunked.dispose();
    model.weights.close();
  }
});

/** A loaded probe as live.ts takes it (fingerprint of this engine, raw template, optional cut). */
function loaded(probe: Probe, maxTokens: number | null = null): LoadedProbe {
  const meta = {
    labelNames: ["a", "b", "c"],
    config: probe.config,
    model: { fingerprint: engine.fingerprint, blocks: engine.spec.blocks, dim: engine.spec.dim },
    tokenization: { addBos: engine.tokenizer.addBosByDefault, template: "raw", maxTokens, target: "prompt" },
  } as unknown as ProbeMeta;
  return { dir, probe, meta } as LoadedProbe;
}

test("generateWithProbes asks the prefill for summaries, not hidden states; concurrent requests in one batch = each alone = training forward", async () => {
  // two sets: every kind (MHA read from projections), and mean-pooled MHA (attention reads when prefilled in one run)
  for (const set of [[...probes, ...standardised], attended]) await batchedEqualsAlone(set);
});

async function batchedEqualsAlone(set: Probe[]): Promise<void> {
  const record = Object.fromEntries(set.map((p, i) => [`p${i}`, loaded(p)]));
  const hook = probeHook(record, { fingerprint: engine.fingerprint, summaries: true });
  assert.ok(hook.forwardOptions.summary !== undefined && hook.forwardOptions.hidden === undefined);
  assert.equal(hook.forwardOptions.summary.attention !== undefined, set === attended);
  const alone = [];
  for (const prompt of PROMPTS) {
    const r = generateWithProbes(engine, { prompt, maxTokens: 3, temperature: 0 }, record);
    await r.generation.result;
    alone.push(await r.classifications);
  }
  // the prompts prefill while the others decode: pieces of 2 tokens between decode steps
  const batched = await Engine.load(STORIES260K, { taps: true, cacheDir: dir, prefillChunk: 2 });
  try {
    const runs = PROMPTS.map((prompt) => generateWithProbes(batched, { prompt, maxTokens: 8, temperature: 0 }, record));
    const done = runs.map((r) => r.generation.result); // starts them all
    const results = await Promise.all(runs.map(async (r, k) => ({ res: await done[k], cs: await r.classifications })));
    assert.ok(batched.batchStats.decodeRuns < batched.batchStats.decodeRows, "the requests decoded together");
    for (const [k, prompt] of PROMPTS.entries()) {
      const h = (await engine.forward(prompt, { hidden: true })).hidden!;
      for (const [i, p] of set.entries()) {
        const ref = (await reference(p, h)).probs;
        const got = Object.values(results[k].cs[i].probabilities);
        assert.ok(maxAbsDiff(got, ref) <= 1e-5, `batched ${prompt} ${label(p.config)}: ${maxAbsDiff(got, ref)}`);
        assert.ok(maxAbsDiff(got, Object.values(alone[k][i].probabilities)) <= 1e-5, `batched vs alone ${prompt}`);
        assert.equal(results[k].cs[i].tokens, h.tokens);
      }
    }
  } finally {
    await batched.dispose();
  }
}

test("MHA probes ask for projections; differing length cuts keep the stacked tensor; a cut shared by all probes is a summary cut", async () => {
  const { layers, dim } = probes[0].shape;
  const mha = new Probe({ kind: "mha", heads: 2, downcast: 4 }, { layers, dim, classes: 3 });
  assert.equal(readsSummaries(mha), true);
  const withMha = probeHook({ a: loaded(probes[0]), m: loaded(mha) }, { fingerprint: engine.fingerprint, summaries: true }).forwardOptions;
  assert.equal(withMha.summary?.projections?.width, 3 * (dim / 4), "Q, K and V of width d/f");
  assert.equal(withMha.hidden, undefined);
  assert.deepEqual(probeHook({ a: loaded(probes[0], 4), b: loaded(probes[2], null) }, { fingerprint: engine.fingerprint, summaries: true }).forwardOptions, { hidden: true });
  // without the engine's summaries (an export without them): the stacked tensor
  assert.deepEqual(probeHook({ a: loaded(probes[0]) }, { fingerprint: engine.fingerprint }).forwardOptions, { hidden: true });
  const cut = probeHook({ a: loaded(probes[0], 4), b: loaded(probes[2], 4) }, { fingerprint: engine.fingerprint, summaries: true });
  assert.equal(cut.forwardOptions.summary?.upTo, 4);
  // a cut prompt through generateWithProbes: the probes saw its first 4 tokens
  const record = { a: loaded(probes[0], 4), b: loaded(probes[2], 4) };
  const r = generateWithProbes(engine, { prompt: PROMPTS[2], maxTokens: 2, temperature: 0 }, record);
  await r.generation.result;
  const cs = await r.classifications;
  const h4 = (await engine.forward(PROMPTS[2], { hidden: true })).hidden!.sliceTokens(0, 4);
  assert.equal(cs[0].tokens, 4);
  assert.ok(maxAbsDiff(Object.values(cs[1].probabilities), (await reference(probes[2], h4)).probs) <= 1e-5);
});

test("bad summary requests are typed errors naming the field", async () => {
  const { layers, dim } = probes[0].shape;
  await assert.rejects(engine.forward("Lily", { summary: { gates: { weights: new Float32Array(3), bias: new Float32Array(layers), count: 1, readOf: new Int32Array(1) } } }), (e: unknown) => e instanceof InvalidArgumentError && e.field === "summary.gates");
  const readOfTwo = { weights: new Float32Array(layers * dim * 2), bias: new Float32Array(layers), count: 1, readOf: Int32Array.from([1]) };
  await assert.rejects(engine.forward("Lily", { summary: { gates: readOfTwo } }), (e: unknown) => e instanceof InvalidArgumentError && e.field === "summary.gates.readOf" && /read 0 names gate 1, outside 0\.\.0/.test(e.message));
  await assert.rejects(engine.forward("Lily", { summary: { upTo: 0 } }), (e: unknown) => e instanceof InvalidArgumentError && e.field === "summary.upTo");
  const plain = await Engine.load(STORIES260K, { taps: true, tapSummaries: false, cacheDir: dir });
  try {
    assert.equal(plain.hasTapSummaries, false);
    await assert.rejects(plain.forward("Lily", { summary: {} }), (e: unknown) => e instanceof InvalidArgumentError && e.field === "summary");
    // probes still work there, from the stacked tensor
    const r = generateWithProbes(plain, { prompt: "Lily", maxTokens: 1 }, { a: loaded(probes[2]) });
    await r.generation.result;
    const [c] = await r.classifications;
    const ref = (await reference(probes[2], (await plain.forward("Lily", { hidden: true })).hidden!)).probs;
    assert.ok(maxAbsDiff(Object.values(c.probabilities), ref) <= 1e-5);
  } finally {
    await plain.dispose();
  }
  await assert.rejects(engine.forward("Lily", { summary: { projections: { weights: new Float32Array(layers * dim), bias: new Float32Array(layers), width: 2 } } }), (e: unknown) => e instanceof InvalidArgumentError && e.field === "summary.projections");
  assert.throws(() => new SummaryProbes([probes[0], new Probe({ kind: "pooling" }, { layers, dim: dim * 2, classes: 2 })]), InvalidArgumentError);
});

/** A summary computed here in float64 from hidden states [L+1, T, d] (what the graph computes, for shapes without a model). */
function summarize(h: HiddenStates, r: SummaryRequest): TapSummary {
  const { layers: L1, tokens: T, dim: d } = h;
  const sum = new Float64Array(L1 * d), last = new Float64Array(L1 * d), max = new Float64Array(L1 * d).fill(-Infinity);
  const G = r.gates?.count ?? 0, P = r.projections?.width ?? 0;
  const reads = new Float64Array(L1 * (r.gates?.readOf.length ?? 0)), den = new Float64Array(L1 * G), proj = new Float32Array(L1 * T * P);
  for (let l = 0; l < L1; l++) for (let t = 0; t < T; t++) {
    const x = h.token(l, t);
    for (let j = 0; j < d; j++) {
      sum[l * d + j] += x[j];
      max[l * d + j] = Math.max(max[l * d + j], x[j]);
    }
    if (t === T - 1) last.set(x, l * d);
    if (G > 0) addGateTerms(x, l, r.gates!, reads, den);
    for (let c = 0; c < P; c++) {
      let acc = r.projections!.bias[l * P + c];
      for (let j = 0; j < d; j++) acc += x[j] * r.projections!.weights[(l * d + j) * P + c];
      proj[(l * T + t) * P + c] = acc;
    }
  }
  // one run covers the tokens here: attention reads when asked, as the graph gives them (gate reads in float32)
  const a = r.attention;
  const gateReads = G > 0 ? Float64Array.from(Float32Array.from(reads)) : undefined;
  const [s0, l0] = r.pooled !== false ? [sum, last] : [undefined, undefined]; // as the graph gives them
  if (a !== undefined) return new TapSummary(L1, d, T, s0, l0, r.max === true ? max : undefined, G, gateReads, G > 0 ? den : undefined, undefined, 0, Float32Array.from(attentionReads(h, a)), a.heads);
  return new TapSummary(L1, d, T, s0, l0, r.max === true ? max : undefined, G, gateReads, G > 0 ? den : undefined, P > 0 ? proj : undefined, P);
}

test("random Qwen2.5-0.5B shape (L+1 25, d 896), random and standardised weights: every kind from summaries = float64 training forward (≤ 1e-5)", async () => {
  const rng = new Rng(9);
  const shape = { layers: 25, dim: 896, classes: 2 };
  // the benchmarks' MHA shape (H 8, f 8) for mean pooling; f 16 for max keeps the test short
  const configs = KINDS.map((c) => (c.kind === "mha" ? { ...c, heads: 8, downcast: c.pool === "mean" ? 8 : 16 } : c));
  const random = (T: number) => {
    const data = new Float32Array(25 * T * 896); // [L+1, T, d]
    for (let i = 0; i < data.length; i++) data[i] = rng.normal() * (1 + (i % 7));
    return new HiddenStates(25, T, 896, data);
  };
  // statistics of other prompts, as training computes them
  const others = [random(5), random(3), random(7), random(4)];
  const norm = inputStatistics((i) => others[i], others.length);
  // every kind (MHA from projections); mean-pooled MHA at the benchmarks' shape and another head count of the same
  // width, from attention reads and from projections
  const readable: ProbeConfig[] = [{ kind: "mha", heads: 8, downcast: 8, pool: "mean" }, { kind: "scoring" }, { kind: "mha", heads: 4, downcast: 16, pool: "mean" }];
  for (const T of [1, 6]) {
    const h = random(T);
    for (const [std, kinds, runs] of [[false, configs, 1], [true, configs, 1], [false, readable, 2], [true, readable, 2]] as const) {
      const set = kinds.map((c, i) => {
        const p = randomize(new Probe({ ...c, standardize: std }, shape, { seed: i }), 300 + i);
        if (std) p.norm = norm;
        return p;
      });
      const sp = new SummaryProbes(set);
      assert.equal(sp.request.attention !== undefined, kinds === readable);
      for (let run = 0; run < runs; run++) await matchesF64(set, sp, h, run === 0 ? sp.request : acrossRuns(sp.request), std, T);
    }
  }
});

/** Every probe of `set` from a summary of `h` recomputed in float64 (as the graph would give it for `request`) = the float64 training forward. */
async function matchesF64(set: Probe[], sp: SummaryProbes, h: HiddenStates, request: SummaryRequest, std: boolean, T: number): Promise<void> {
  const outs = await sp.run(summarize(h, request));
  for (let i = 0; i < set.length; i++) {
    // the training forward in float64: at this width the float32 one is itself ~1e-5 off for sharp MHA cases
    // (one case: f64 0.1553112, summaries path 0.1553115, f32 tape 0.1553185, compiled stacked graph 0.1553166)
    const ref = await reference(set[i], h, "f64");
    const diff = maxAbsDiff(outs[i].probabilities, ref.probs);
    assert.ok(diff <= 1e-5, `T ${T} ${label(set[i].config)}${std ? " standardised" : ""}${request.attention !== undefined ? " (attention reads)" : ""}: differs by ${diff}`);
    if (ref.gate !== undefined) assert.ok(maxAbsDiff(outs[i].layerWeights!, ref.gate) <= 1e-5);
  }
}

test("tap_pooled_out, tap_max_out, tap_gate_reads/den, tap_proj_out and tap_attn_out of a padded batch are each row's own over its real tokens (the masked branches); an unpadded run takes the dense branches with the same result; runs of 5 and of STACK_TOKENS + 2 tokens, each over one stack of every layer and per layer", async () => {
  const model = await loadModel(STORIES260K);
  const { modelPath } = ensureDecoderGraph(model, { taps: true, tapSummaries: true }, { cacheDir: dir });
  const session = await ort.InferenceSession.create(modelPath);
  try {
    const { blocks, kvHeads, headDim, dim: d } = model.spec;
    const L1 = blocks + 1;
    // the engine's runs up to STACK_TOKENS may take the summaries over one stack of every layer, longer ones per layer
    for (const T of [5, STACK_TOKENS + 2]) {
      // row 0: T real tokens; row 1: T − 2 real tokens then 2 padding positions
      const more = (n: number, seed: number) => Array.from({ length: n }, (_, t) => 3 + ((t * 37 + seed) % 500));
      const ids = [1, 300, 42, 17, 99, ...more(T - 5, 11), 1, 56, 7, ...more(T - 5, 23), 0, 0];
      const mask = [...Array(2 * T - 2).fill(1), 0, 0];
      const a = new SummaryProbes(attended).request.attention!;
      const A = 2 * a.heads * a.headDim;
      // two gates and three reads, so that a mixed-up [L+1, B, G] layout or read-to-gate map shows
      const G = 2, readOf = Int32Array.from([1, 0, 1]), K = readOf.length;
      const rng = new Rng(7);
      const gateW = Float32Array.from({ length: L1 * d * (G + K) }, () => rng.normal() * 0.05); // [L+1, d, G+K]
      const gateB = Float32Array.from({ length: L1 * G }, () => rng.normal() * 0.1); // [L+1, 1, G]
      const gates: SummaryGates = { weights: gateW, bias: gateB, count: G, readOf };
      const P = 6; // projection columns (an MHA probe's Q, K, V when a prompt spans runs)
      const projW = Float32Array.from({ length: L1 * d * P }, () => rng.normal() * 0.1); // [L+1, d, P]
      const projB = Float32Array.from({ length: L1 * P }, () => rng.normal() * 0.1); // [L+1, 1, P]
      const run = async (B: number, rowIds: number[], rowMask: number[], gatesAndAttn = true, max = true, stack = stackSummaries(T, d, { max, mha: gatesAndAttn })) => {
        const feeds: Record<string, ort.Tensor> = {
          input_ids: new ort.Tensor("int64", BigInt64Array.from(rowIds, BigInt), [B, T]), // [B, T]
          attention_mask: new ort.Tensor("int64", BigInt64Array.from(rowMask, BigInt), [B, T]), // [B, T]
          position_ids: new ort.Tensor("int64", BigInt64Array.from(rowIds.map((_, i) => i % T), BigInt), [B, T]), // [B, T]
        };
        if (session.inputNames.includes("logits_positions")) feeds.logits_positions = new ort.Tensor("int64", BigInt64Array.from([BigInt(T - 1)]), [1]); // [1]
        for (let i = 0; i < blocks; i++) for (const kind of ["key", "value"] as const) feeds[pastName(i, kind)] = new ort.Tensor("float32", new Float32Array(0), [B, kvHeads, 0, headDim]); // [B, kvH, 0, hd]
        const flag = (v: boolean) => new ort.Tensor("bool", [v], []);
        Object.assign(feeds, {
          [TAP.hidden]: flag(true), [TAP.pooled]: flag(true), [TAP.max]: flag(max), [TAP.gates]: flag(gatesAndAttn), [TAP.proj]: flag(gatesAndAttn),
          [TAP.gateWeights]: new ort.Tensor("float32", gateW, [L1, d, G + K]), [TAP.gateBias]: new ort.Tensor("float32", gateB, [L1, 1, G]),
          [TAP.gateReadOf]: new ort.Tensor("int64", BigInt64Array.from(readOf, BigInt), [K]),
          [TAP.projWeights]: new ort.Tensor("float32", projW, [L1, d, P]), [TAP.projBias]: new ort.Tensor("float32", projB, [L1, 1, P]),
          [TAP.attn]: flag(gatesAndAttn), [TAP.attnWeights]: new ort.Tensor("float32", a.weights, [L1, d, A]), [TAP.attnBias]: new ort.Tensor("float32", a.bias, [L1, 1, A]),
          [TAP.attnHeads]: new ort.Tensor("int64", BigInt64Array.from([BigInt(a.heads), BigInt(a.headDim)]), [2]), [TAP.stack]: flag(stack),
        });
        const out = await session.run(feeds, ["hidden_states", TAP.maxOut, TAP.attnOut, TAP.gateReadsOut, TAP.gateDenOut, TAP.pooledOut, TAP.projOut]);
        return {
          proj: out[TAP.projOut].data as Float32Array, // [L+1, B, T, P]
          pooled: out[TAP.pooledOut].data as Float32Array, // [B, L+1, 2, d]: the sum and the last real token
          hidden: out.hidden_states.data as Float32Array, max: out[TAP.maxOut].data as Float32Array, attn: out[TAP.attnOut].data as Float32Array, // [L+1, B, T, d], [B, L+1, d], [L+1, B, H, d]
          gateReads: out[TAP.gateReadsOut].data as Float32Array, gateDen: out[TAP.gateDenOut].data as Float32Array, // [B, L+1, K], [B, L+1, G]
        };
      };
      /** Row b's gate reads and denominators ([L+1, K] then [L+1, G]) of a run, and the float64 ones over its first `real` tokens. */
      const gateRow = (r: { gateReads: Float32Array; gateDen: Float32Array }, b: number) => [
        ...r.gateReads.subarray(b * L1 * K, (b + 1) * L1 * K), ...r.gateDen.subarray(b * L1 * G, (b + 1) * L1 * G),
      ];
      const expectGates = (hidden: Float32Array, B: number, b: number, real: number) => {
        const reads = new Float64Array(L1 * K), den = new Float64Array(L1 * G);
        for (let l = 0; l < L1; l++) for (let t = 0; t < real; t++) {
          addGateTerms(hidden.subarray(((l * B + b) * T + t) * d, ((l * B + b) * T + t + 1) * d), l, gates, reads, den);
        }
        return [...reads, ...den];
      };
      /** Row b's attention reads [L+1, H, d] of a run's output, and the float64 ones from its first `real` tokens. */
      const attnRow = (attn: Float32Array, B: number, b: number) => {
        const n = a.heads * d, row = new Float32Array(L1 * n);
        for (let l = 0; l < L1; l++) row.set(attn.subarray((l * B + b) * n, (l * B + b + 1) * n), l * n);
        return row;
      };
      const expectAttn = (hidden: Float32Array, B: number, b: number, real: number) => {
        const h = new Float32Array(L1 * real * d); // [L+1, real, d]
        for (let l = 0; l < L1; l++) h.set(hidden.subarray((l * B + b) * T * d, ((l * B + b) * T + real) * d), l * real * d);
        return attentionReads(new HiddenStates(L1, real, d, h), a);
      };
      const expectMax = (hidden: Float32Array, B: number, b: number, real: number) => {
        const m = new Float32Array(L1 * d).fill(-Infinity); // [L+1, d]
        for (let l = 0; l < L1; l++) for (let t = 0; t < real; t++) for (let j = 0; j < d; j++) m[l * d + j] = Math.max(m[l * d + j], hidden[((l * B + b) * T + t) * d + j]);
        return m;
      };
      /** Row b's [L+1, 2, d]: per layer the sum over its first `real` tokens and the last of them, in float64. */
      const expectPooled = (hidden: Float32Array, B: number, b: number, real: number) => {
        const p = new Float64Array(L1 * 2 * d);
        for (let l = 0; l < L1; l++) for (let t = 0; t < real; t++) for (let j = 0; j < d; j++) {
          const x = hidden[((l * B + b) * T + t) * d + j];
          p[(l * 2) * d + j] += x;
          if (t === real - 1) p[(l * 2 + 1) * d + j] = x;
        }
        return p;
      };
      /** Every token's projections x · W_l + b_l [L+1, B, T, P] in float64 (padding positions too: the probe masks them later). */
      const expectProj = (hidden: Float32Array, B: number) => {
        const out = new Float64Array(L1 * B * T * P);
        for (let l = 0; l < L1; l++) for (let r = 0; r < B * T; r++) for (let c = 0; c < P; c++) {
          let acc = projB[l * P + c];
          for (let j = 0; j < d; j++) acc += hidden[(l * B * T + r) * d + j] * projW[(l * d + j) * P + c];
          out[(l * B * T + r) * P + c] = acc;
        }
        return out;
      };
      const padded = await run(2, ids, mask);
      assert.ok(relDiff(padded.proj, expectProj(padded.hidden, 2)) <= 1e-5, `T ${T}: projections`);
      for (const [b, real] of [[0, T], [1, T - 2]]) {
        const pooled = relDiff(padded.pooled.subarray(b * L1 * 2 * d, (b + 1) * L1 * 2 * d), expectPooled(padded.hidden, 2, b, real));
        assert.ok(pooled <= 1e-6, `row ${b}: sum and last token over its ${real} real tokens differ by ${pooled}`);
        const got = padded.max.subarray(b * L1 * d, (b + 1) * L1 * d);
        assert.equal(maxAbsDiff(got, expectMax(padded.hidden, 2, b, real)), 0, `row ${b}: max over its ${real} real tokens`);
        const diff = relDiff(attnRow(padded.attn, 2, b), expectAttn(padded.hidden, 2, b, real));
        assert.ok(diff <= 1e-5, `row ${b}: attention reads over its ${real} real tokens differ by ${diff}`);
        const gates = relDiff(gateRow(padded, b), expectGates(padded.hidden, 2, b, real));
        assert.ok(gates <= 1e-5, `row ${b}: gate sums over its ${real} real tokens differ by ${gates}`);
      }
      assert.ok(relDiff(gateRow(padded, 1), expectGates(padded.hidden, 2, 1, T)) > 1e-3, "padding would change row 1's gate sums");
      assert.ok(relDiff(attnRow(padded.attn, 2, 1), expectAttn(padded.hidden, 2, 1, T)) > 1e-3, "padding would change row 1's attention reads");
      // the padding positions' states differ from the real maxima somewhere (else the test could not tell)
      assert.ok(maxAbsDiff(padded.max.subarray(L1 * d), expectMax(padded.hidden, 2, 1, T)) > 0, "padding would change row 1's max");
      const dense = await run(1, ids.slice(0, T), mask.slice(0, T));
      assert.equal(maxAbsDiff(dense.max, expectMax(dense.hidden, 1, 0, T)), 0);
      assert.equal(maxAbsDiff(dense.max, padded.max.subarray(0, L1 * d)), 0, "row 0 alone = row 0 in the padded batch");
      assert.ok(relDiff(dense.attn, expectAttn(dense.hidden, 1, 0, T)) <= 1e-5, "unpadded attention reads");
      assert.ok(relDiff(dense.attn, attnRow(padded.attn, 2, 0)) <= 1e-5, "row 0 alone = row 0 in the padded batch (attention reads)");
      assert.ok(relDiff(gateRow(dense, 0), gateRow(padded, 0)) <= 1e-5, "row 0 alone = row 0 in the padded batch (gate sums)");
      assert.ok(relDiff(dense.pooled, padded.pooled.subarray(0, L1 * 2 * d)) <= 1e-6, "row 0 alone = row 0 in the padded batch (sum and last)");
      // sums and max asked for alone: the same values
      const alone = await run(2, ids, mask, false);
      assert.equal(alone.gateReads.length + alone.attn.length, 0, "gates and attention reads not asked for");
      assert.ok(relDiff(alone.pooled, padded.pooled) <= 1e-6, "sum and last without gates or MHA");
      assert.equal(maxAbsDiff(alone.max, padded.max), 0, "max without gates or MHA");
      // over a stack of every layer and per layer (tap_stack): the same values, whatever is asked
      for (const stack of [true, false]) {
        const other = await run(2, ids, mask, true, true, stack);
        const what = `T ${T}, ${stack ? "over a stack" : "per layer"}`;
        assert.ok(relDiff(other.pooled, padded.pooled) <= 1e-6, `${what}: sum and last`);
        assert.equal(maxAbsDiff(other.max, padded.max), 0, `${what}: max`);
        assert.ok(relDiff(gateRow(other, 0), gateRow(padded, 0)) <= 1e-5 && relDiff(gateRow(other, 1), gateRow(padded, 1)) <= 1e-5, `${what}: gate sums`);
        assert.ok(relDiff(other.attn, padded.attn) <= 1e-5, `${what}: attention reads`);
        assert.ok(relDiff(other.proj, expectProj(other.hidden, 2)) <= 1e-5, `${what}: projections`);
        const sums = await run(2, ids, mask, false, false, stack);
        assert.equal(sums.max.length + sums.gateReads.length + sums.attn.length, 0, "only sums asked for");
        assert.ok(relDiff(sums.pooled, padded.pooled) <= 1e-6, `${what}: sum and last alone`);
      }
    }
  } finally {
    await session.release();
  }
});
