/**
 * Probes on the live request: classify a prompt from the hidden states of the very prefill run that produces
 * the first logits (no second pass), before any decode step, and optionally block the request.
 *
 * With an engine that has tap summaries (Engine.hasTapSummaries), pooling, scoring and fixed probes are read from
 * the per-layer token summaries the prefill computes in the decoder graph (probe/summary.ts), MHA probes from
 * per-token Q/K/V projections computed there too: the [L+1, T, d] tensor never leaves ORT. A set with probes
 * trained on different length cuts takes the stacked hidden states and the compiled probe graph (compiled.ts).
 *
 *   const engine = await Engine.load(model, { taps: true });
 *   const probes = loadProbes([dirA, dirB], engine.fingerprint);
 *   const { generation, classifications } = generateWithProbes(engine, { prompt, maxTokens: 64 }, probes,
 *     { policy: { block: ["toxic"] } });
 *   console.error(await classifications);          // settled before the first token is produced
 *   const result = await generation.result;         // finishReason "blocked" when a probe blocked it
 */
import { basename, resolve } from "node:path";
import type { Engine, GenerateRequest } from "../engine/engine.js";
import type { DecodeStepHook, Generation, PrefillDecision, PrefillHook } from "../engine/generate.js";
import type { ForwardOptions } from "../engine/types.js";
import type { TapSummary } from "../types/summary.js";
import type { HiddenStates } from "../types/hidden.js";
import { InvalidArgumentError, NonFiniteError, ProbeError } from "../errors.js";
import { tokenizationDifferences, type TokenizationSettings } from "../data/features.js";
import { PROBE_JSON, checkProbeModel, loadProbe, type LoadedProbe, type ProbeMeta } from "./artifact.js";
import { predictClasses } from "./metrics.js";
import { compiledProbesFor, type CompiledOutput } from "./compiled.js";
import { readsSummaries, summaryProbesFor, type SummaryProbes } from "./summary.js";
import { responseTracker } from "./response.js";

/** How a request's prompt became tokens (compared with what the probe was trained on). */
export interface PromptTokenization {
  template: "raw" | "chat";
}

/** What one probe said about one prompt. */
export interface Classification {
  /** The probe's name (its key, or its folder's name). */
  probe: string;
  /** The decided label: for binary probes with a threshold, P(class 1) ≥ threshold; otherwise the argmax. */
  label: string;
  labelIndex: number;
  /** P(label) for every label name. */
  probabilities: Record<string, number>;
  /** Binary probes: the decision threshold on P(labelNames[1]) the label came from. */
  threshold?: number;
  /** Scoring probes: the layer-gate weights [L+1] (softmax over layers). */
  layerWeights?: number[];
  /** Prompt tokens the probe saw (the first `tokenization.maxTokens` when the probe was trained on a cut). */
  tokens: number;
  /** Wall time of the compiled-probe call that classified this prompt (shared by the probes run together), ms. */
  probeMs: number;
  /** True when this probe's label is one the policy blocks on. */
  blocks: boolean;
  /** The prompt was tokenised unlike the probe's training data (BOS, chat template, length cut): read with care. */
  warnings: string[];
}

/** "annotate" (default): classify, never stop. { block: [...] }: stop before decoding when a label matches. */
export type ProbePolicy = "annotate" | { block: readonly string[] };

export interface ProbeHookOptions {
  /** The serving model's fingerprint (Engine.fingerprint): probes trained on another model are refused. */
  fingerprint: string;
  policy?: ProbePolicy;
  /** How the request's prompt was tokenised (checked against each probe's training tokenisation). */
  tokenization?: PromptTokenization;
  /** The tokenizer's BOS id, to check the BOS setting the probes were trained with. */
  bosTokenId?: number;
  /** Called with the classifications inside the hook, before the decision reaches the engine. */
  onClassified?: (classifications: Classification[]) => void;
  /**
   * The engine returns per-layer token summaries (Engine.hasTapSummaries): pooling, scoring and fixed probes are
   * then read from those (probe/summary.ts) and the prefill need not hand over the [L+1, T, d] tensor. See
   * ProbeHook.forwardOptions. Default false (the hidden states).
   */
  summaries?: boolean;
}

export interface ProbeHook {
  /** Pass as GenerateOptions.onPrefill. */
  onPrefill: PrefillHook;
  /** Settles when the hook has run (before the first decode step); rejects when `fail` is called first. */
  results: Promise<Classification[]>;
  /** Reject `results` (e.g. the generation failed before its prefill). No effect once settled. */
  fail(err: unknown): void;
  /**
   * What the prefill must return for these probes: `{ summary }` when every probe reads token summaries (and
   * ProbeHookOptions.summaries is set), else `{ hidden: true }`. Give it to Engine.forward, or its fields to
   * generate (GenerateOptions.summary / hidden).
   */
  forwardOptions: ForwardOptions;
}

/** A probe with the name it is reported under. */
interface NamedProbe {
  name: string;
  loaded: LoadedProbe;
}

function nameProbes(probes: readonly LoadedProbe[] | Record<string, LoadedProbe>): NamedProbe[] {
  const list: NamedProbe[] = Array.isArray(probes)
    ? (probes as readonly LoadedProbe[]).map((loaded) => ({ name: basename(resolve(loaded.dir)), loaded }))
    : Object.entries(probes as Record<string, LoadedProbe>).map(([name, loaded]) => ({ name, loaded }));
  if (list.length === 0) throw new InvalidArgumentError("no probes given", { field: "probes" });
  const seen = new Set<string>();
  for (const { name } of list) {
    if (seen.has(name)) throw new InvalidArgumentError(`two probes are named '${name}' (name them with a record)`, { field: "probes" });
    seen.add(name);
  }
  return list;
}

function checkPolicy(policy: ProbePolicy, probes: NamedProbe[]): Set<string> {
  if (policy === "annotate") return new Set();
  if (policy === null || typeof policy !== "object" || !Array.isArray(policy.block)) {
    throw new InvalidArgumentError(`policy must be "annotate" or { block: [labels] }`, { field: "policy" });
  }
  // every blocked label must be one some probe can produce ("label" or "probe:label"): a typo would never block
  const known = new Set<string>();
  for (const { name, loaded } of probes) for (const l of loaded.meta.labelNames) known.add(l).add(`${name}:${l}`);
  for (const b of policy.block) {
    if (typeof b !== "string" || !known.has(b)) {
      throw new InvalidArgumentError(`block label '${String(b)}' is not a label of any attached probe (labels: ${[...known].filter((k) => !k.includes(":")).join(", ")})`, { field: "policy.block" });
    }
  }
  return new Set(policy.block);
}

/** Differences between how this prompt was tokenised and how the probe's training prompts were. */
function tokenizationWarnings(meta: ProbeMeta, promptTokens: readonly number[], options: ProbeHookOptions): string[] {
  const trained = meta.tokenization;
  if (trained === undefined) return ["the probe does not record how its training prompts were tokenised"];
  const out: string[] = [];
  if (trained.target === "response") out.push("the probe was trained on response tokens (a response probe), here it reads the prompt");
  const now: Partial<TokenizationSettings> = {};
  if (options.tokenization !== undefined) now.template = options.tokenization.template;
  if (options.bosTokenId !== undefined) now.addBos = promptTokens[0] === options.bosTokenId;
  out.push(...tokenizationDifferences(trained, now, ["the probe's training prompts", "this prompt"]));
  if (trained.maxTokens !== null && promptTokens.length > trained.maxTokens) {
    out.push(`prompt has ${promptTokens.length} tokens, the probe was trained on the first ${trained.maxTokens}: classified on those`);
  }
  return out;
}

/** The hidden states a probe sees: the first `tokenization.maxTokens` when it was trained on a cut. */
function cutFor(meta: ProbeMeta, hidden: HiddenStates): HiddenStates {
  const max = meta.tokenization?.maxTokens ?? null;
  // causal model: the first max tokens' states equal those of a pass over the cut prompt, as in training
  return max !== null && hidden.tokens > max ? hidden.sliceTokens(0, max) : hidden;
}

/** One probe's Classification from its class probabilities [1, C] (and layer weights). */
function classification(
  { name, loaded }: NamedProbe, result: CompiledOutput, tokens: number, probeMs: number,
  promptTokens: readonly number[], blocked: Set<string>, options: ProbeHookOptions,
): Classification {
  const { probe, meta } = loaded;
  const probs = result.probabilities; // [1, C]
  if (!probs.every(Number.isFinite)) {
    throw new NonFiniteError(`probe ${name} produced non-finite probabilities [${Array.from(probs).join(", ")}] (its weights or the prompt's hidden states hold NaN/Inf)`, { file: resolve(loaded.dir, PROBE_JSON) });
  }
  const labelIndex = predictClasses(probs, probe.shape.classes, meta.threshold)[0];
  const label = meta.labelNames[labelIndex];
  return {
    probe: name,
    label,
    labelIndex,
    probabilities: Object.fromEntries(meta.labelNames.map((n, j) => [n, probs[j]])),
    ...(probe.shape.classes === 2 && meta.threshold !== undefined ? { threshold: meta.threshold } : {}),
    ...(result.layerWeights !== undefined ? { layerWeights: Array.from(result.layerWeights) } : {}),
    tokens,
    probeMs,
    blocks: blocked.has(label) || blocked.has(`${name}:${label}`),
    warnings: tokenizationWarnings(meta, promptTokens, options),
  };
}

/** Every probe from the prefill's token summaries (probe/summary.ts): O((L+1)·d) reads, and one small ORT call for MHA probes. */
async function classifyFromSummary(
  named: NamedProbe[],
  set: SummaryProbes,
  summary: TapSummary,
  promptTokens: readonly number[],
  blocked: Set<string>,
  options: ProbeHookOptions,
): Promise<Classification[]> {
  const t0 = performance.now();
  const results = await set.run(summary);
  const probeMs = performance.now() - t0;
  return named.map((p, i) => classification(p, results[i], summary.tokens, probeMs, promptTokens, blocked, options));
}

/**
 * The token summaries these probes can be read from, or undefined when they need the whole tensor: probes trained
 * on different length cuts (the summary has one cut, `upTo`).
 */
function summaryPlan(named: NamedProbe[]): { set: SummaryProbes; forward: ForwardOptions } | undefined {
  if (!named.every((p) => readsSummaries(p.loaded.probe))) return undefined;
  const cuts = new Set(named.map((p) => p.loaded.meta.tokenization?.maxTokens ?? null));
  if (cuts.size !== 1) return undefined;
  const [cut] = cuts;
  const set = summaryProbesFor(named.map((p) => p.loaded.probe));
  return { set, forward: { summary: { ...set.request, ...(cut !== null ? { upTo: cut } : {}) } } };
}

/**
 * Run every probe on one prompt's hidden states through the compiled probe graph (compiled.ts): one ORT call
 * per distinct token cut (usually one call for all probes), on the prefill's tensor without a copy.
 */
async function classifyAll(
  named: NamedProbe[],
  hidden: HiddenStates,
  promptTokens: readonly number[],
  blocked: Set<string>,
  options: ProbeHookOptions,
): Promise<Classification[]> {
  const groups = new Map<number, number[]>(); // tokens seen → probe indices
  named.forEach((p, i) => {
    const T = cutFor(p.loaded.meta, hidden).tokens;
    groups.set(T, [...(groups.get(T) ?? []), i]);
  });
  const out: Classification[] = new Array(named.length);
  for (const [, members] of groups) {
    const t0 = performance.now();
    const h = cutFor(named[members[0]].loaded.meta, hidden);
    const compiled = await compiledProbesFor(members.map((i) => named[i].loaded.probe));
    const results = await compiled.runHidden(h);
    const probeMs = performance.now() - t0; // one call for the whole group
    members.forEach((i, k) => {
      out[i] = classification(named[i], results[k], h.tokens, probeMs, promptTokens, blocked, options);
    });
  }
  return out;
}

/**
 * An onPrefill hook that runs every probe on the prefill's HiddenStates [L+1, T, d] and, under a block
 * policy, ends the request before any decode step (finishReason "blocked") when a probe's label is blocked.
 * Probes are checked against `fingerprint` here, when attached (ModelMismatchError).
 */
export function probeHook(probes: readonly LoadedProbe[] | Record<string, LoadedProbe>, options: ProbeHookOptions): ProbeHook {
  if (typeof options?.fingerprint !== "string" || options.fingerprint.length === 0) {
    throw new InvalidArgumentError("probeHook needs the serving model's fingerprint", { field: "fingerprint" });
  }
  const named = nameProbes(probes);
  for (const { loaded } of named) checkProbeModel(loaded.meta, options.fingerprint, `${loaded.dir}/${PROBE_JSON}`, "serving");
  const blocked = checkPolicy(options.policy ?? "annotate", named);
  const plan = options.summaries === true ? summaryPlan(named) : undefined;

  let settle!: (c: Classification[]) => void;
  let reject!: (e: unknown) => void;
  let settled = false;
  const results = new Promise<Classification[]>((res, rej) => {
    settle = res;
    reject = rej;
  });
  results.catch(() => {}); // reaches whoever awaits it; never an unhandled rejection
  const fail = (err: unknown): void => {
    if (settled) return;
    settled = true;
    reject(err);
  };

  const onPrefill: PrefillHook = async (pass, info): Promise<PrefillDecision | void> => {
    try {
      const states = plan !== undefined && pass.summary !== undefined ? pass.summary : pass.hidden;
      if (states === undefined) {
        throw new InvalidArgumentError("the prefill returned no hidden states: load the engine with taps: true", { field: "hidden" });
      }
      for (const p of named) {
        const { layers, dim } = p.loaded.probe.shape;
        if (states.layers !== layers || states.dim !== dim) {
          throw new ProbeError(`probe expects ${layers} layers × ${dim}, the model gives ${states.layers} × ${states.dim}`, {
            file: `${p.loaded.dir}/${PROBE_JSON}`,
            field: "shape",
          });
        }
      }
      const classifications = plan !== undefined && pass.summary !== undefined
        ? await classifyFromSummary(named, plan.set, pass.summary, info.promptTokens, blocked, options)
        : await classifyAll(named, pass.hidden!, info.promptTokens, blocked, options);
      options.onClassified?.(classifications);
      if (!settled) {
        settled = true;
        settle(classifications);
      }
      return classifications.some((c) => c.blocks) ? { stop: true, blocked: true } : undefined;
    } catch (err) {
      fail(err);
      throw err;
    }
  };
  return { onPrefill, results, fail, forwardOptions: plan?.forward ?? { hidden: true } };
}

/** Load probe folders for the serving model (ModelMismatchError for a probe trained on another one). */
export function loadProbes(dirs: readonly string[], fingerprint: string): LoadedProbe[] {
  return dirs.map((dir) => loadProbe(dir, { expectFingerprint: fingerprint }));
}

export interface ProbedGeneration {
  /** Already started (Generation.start): its prompt is prefilled and classified whether or not anyone iterates yet. */
  generation: Generation;
  /** Settles before the first decode step; rejects if the generation fails before its prefill. */
  classifications: Promise<Classification[]>;
  /** With response probes: every reading so far, in order (the label history; grows while the answer streams). */
  responseHistory?: ResponseReading[];
  /** With response probes: ResponseMonitor.warnings (probes not trained on response tokens). */
  responseWarnings?: string[];
}

/** What one response probe said after `tokens` generated tokens. */
export interface ResponseReading {
  probe: string;
  /** Generated tokens the probe has seen (1 after the first token). */
  tokens: number;
  /** The last of them. */
  token: number;
  label: string;
  labelIndex: number;
  probabilities: Record<string, number>;
  layerWeights?: number[];
  /** True when the policy blocks this label: the generation stopped here (finishReason "content_filter"). */
  blocks: boolean;
  /** Time to update this probe's state and read it, ms. */
  probeMs: number;
}

export interface ResponseMonitorOptions {
  /** The serving model's fingerprint (Engine.fingerprint): probes trained on another model are refused. */
  fingerprint: string;
  /** { block: [labels] }: stop the generation as soon as a response probe gives one of them. Default annotate. */
  policy?: ProbePolicy;
  /** MHA response probes re-run every `every` tokens (default 8); the others update every token. */
  every?: number;
  /** Hears every reading as it is made (e.g. the server's stream of classification updates). */
  onReading?: (r: ResponseReading) => void;
}

export interface ResponseMonitor {
  /** Pass as GenerateOptions.onDecodeStep (with decode hidden states on). */
  onDecodeStep: DecodeStepHook;
  /** Probes attached here that were not trained on response tokens (read their labels with care). */
  warnings: string[];
  /** Every reading so far, in order. */
  history: ResponseReading[];
}

/**
 * Response probes on the streaming answer: each generated token's hidden states [L+1, 1, d] update every
 * probe's running aggregation (probe/response.ts); under a block policy the generation stops at the first token
 * whose reading is blocked. One monitor per request (it holds that request's state).
 */
export function responseMonitor(probes: readonly LoadedProbe[] | Record<string, LoadedProbe>, options: ResponseMonitorOptions): ResponseMonitor {
  if (typeof options?.fingerprint !== "string" || options.fingerprint.length === 0) {
    throw new InvalidArgumentError("responseMonitor needs the serving model's fingerprint", { field: "fingerprint" });
  }
  const named = nameProbes(probes);
  for (const { loaded } of named) checkProbeModel(loaded.meta, options.fingerprint, `${loaded.dir}/${PROBE_JSON}`, "serving");
  const blocked = checkPolicy(options.policy ?? "annotate", named);
  const trackers = named.map((p) => responseTracker(p.loaded.probe, { every: options.every }));
  const warnings = named
    .filter((p) => p.loaded.meta.tokenization?.target !== "response")
    .map((p) => `${p.name}: not trained on response tokens (train --target response); it reads the answer as if it were a prompt`);
  const history: ResponseReading[] = [];
  const onDecodeStep: DecodeStepHook = async (step) => {
    const h = step.pass.hidden;
    if (h === undefined) throw new InvalidArgumentError("the decode step returned no hidden states: response probes need an engine with taps", { field: "hidden" });
    let stop = false;
    for (let i = 0; i < named.length; i++) {
      const { name, loaded } = named[i];
      const t0 = performance.now();
      const r = await trackers[i].push(h.data); // [L+1, 1, d] = [L+1, d]
      if (r === undefined) continue;
      const labelIndex = predictClasses(r.probabilities, loaded.probe.shape.classes, loaded.meta.threshold)[0];
      const label = loaded.meta.labelNames[labelIndex];
      const reading: ResponseReading = {
        probe: name,
        tokens: trackers[i].tokens,
        token: step.token,
        label,
        labelIndex,
        probabilities: Object.fromEntries(loaded.meta.labelNames.map((n, j) => [n, r.probabilities[j]])),
        ...(r.layerWeights !== undefined ? { layerWeights: Array.from(r.layerWeights) } : {}),
        blocks: blocked.has(label) || blocked.has(`${name}:${label}`),
        probeMs: performance.now() - t0,
      };
      history.push(reading);
      options.onReading?.(reading);
      stop ||= reading.blocks;
    }
    return stop ? { stop: true } : undefined;
  };
  return { onDecodeStep, history, warnings };
}

/**
 * One request with probes on its prefill: the engine must be loaded with taps. The request's own onPrefill
 * (if any) is replaced. Bad requests and mismatched probes throw here, synchronously.
 */
export function generateWithProbes(
  engine: Engine,
  request: GenerateRequest,
  probes: readonly LoadedProbe[] | Record<string, LoadedProbe>,
  options: Omit<ProbeHookOptions, "fingerprint" | "tokenization" | "bosTokenId"> & {
    /** Response probes moderating the answer token by token (see responseMonitor). */
    response?: { probes: readonly LoadedProbe[] | Record<string, LoadedProbe> } & Omit<ResponseMonitorOptions, "fingerprint">;
  } = {},
): ProbedGeneration {
  if (!engine.hasTaps) throw new InvalidArgumentError("probes need an engine loaded with taps: true", { field: "taps" });
  const template = request.messages !== undefined || request.chat === true ? "chat" : "raw";
  // token-id prompts: the caller chose the tokens, so only the BOS check applies
  const tokenization = typeof request.prompt === "string" || template === "chat" ? { template } as PromptTokenization : undefined;
  const { response, ...promptOptions } = options;
  const monitor = response === undefined ? undefined : responseMonitor(response.probes, { ...response, fingerprint: engine.fingerprint });
  const promptProbes = Array.isArray(probes) ? probes.length : Object.keys(probes).length;
  // response probes alone: no prefill hook, no prompt classifications
  if (promptProbes === 0 && monitor !== undefined) {
    const generation = engine.generate({ ...request, onDecodeStep: monitor.onDecodeStep, decodeHidden: true });
    return { generation, classifications: Promise.resolve([]), responseHistory: monitor.history, responseWarnings: monitor.warnings };
  }
  const hook = probeHook(probes, {
    ...promptOptions,
    fingerprint: engine.fingerprint,
    tokenization,
    bosTokenId: engine.tokenizer.bosTokenId,
    summaries: engine.hasTapSummaries,
  });
  const { summary } = hook.forwardOptions;
  const generation = engine.generate({
    ...request, onPrefill: hook.onPrefill, ...(summary !== undefined ? { summary, hidden: false } : { hidden: true }),
    ...(monitor !== undefined ? { onDecodeStep: monitor.onDecodeStep, decodeHidden: true } : {}),
  });
  // started now, so that awaiting `classifications` before iterating (or awaiting `result`) cannot wait forever:
  // the prefill runs and its first chunk waits for the consumer
  generation.start();
  // a generation that fails (or ends) without reaching the hook must not leave `classifications` pending
  generation.done.then(
    () => hook.fail(new InvalidArgumentError("the generation ended before its prefill ran (aborted?)", { field: "signal" })),
    (err) => hook.fail(err),
  );
  return { generation, classifications: hook.results, ...(monitor !== undefined ? { responseHistory: monitor.history, responseWarnings: monitor.warnings } : {}) };
}
