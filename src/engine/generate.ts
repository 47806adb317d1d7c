/**
 * The generation loop over a DecoderSession: prefill the prompt in one run (logits + the prompt's hidden
 * states + KV cache), hand that pass to `onPrefill` (a probe hook that may end the request before any decode
 * step), then decode one token per run with sampling, stop strings, EOS and a token budget, streaming text.
 */
import { ContextOverflowError, InvalidArgumentError, NonFiniteError } from "../errors.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { createTextStreamer } from "../tokenizer/streamer.js";
import { Sampler, checkSamplingOptions, greedyPick, type SamplingOptions } from "./sampler.js";
import { StopStringMatcher } from "./stop.js";
import { sessionRunner, type SequenceRunner } from "./batch.js";
import type { DecoderSession, ForwardPass } from "./types.js";
import type { SummaryRequest } from "../types/summary.js";

/**
 * What `onPrefill` may return: `{ stop: true }` ends the request before the first decode step (finishReason
 * "stop"); `{ stop: true, blocked: true }` says a policy refused it (finishReason "blocked").
 */
export interface PrefillDecision {
  stop?: boolean;
  /** With stop: the request was refused by a policy (probe block), not just ended. */
  blocked?: boolean;
}

export interface PrefillInfo {
  /** The prompt's token ids (the tokens of `pass.hidden`). */
  promptTokens: readonly number[];
}

export type PrefillHook = (pass: ForwardPass, info: PrefillInfo) => PrefillDecision | void | Promise<PrefillDecision | void>;

/** One generated token, after the decode run that fed it (so `pass.hidden` holds its own hidden states). */
export interface DecodeStep {
  /** 0 for the first generated token. */
  index: number;
  token: number;
  /** The run over `token`: logits for the next position, and with decode hidden states [L+1, 1, d]. */
  pass: ForwardPass;
}

/** What `onDecodeStep` may return: `{ stop: true }` ends generation at once (finishReason "content_filter"). */
export interface DecodeDecision {
  stop?: boolean;
}

export type DecodeStepHook = (step: DecodeStep) => DecodeDecision | void | Promise<DecodeDecision | void>;

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate (default: 256, or fewer when the context window leaves less room). */
  maxTokens?: number;
  /** Stop strings: generation ends when the text contains one; it is not part of the output. */
  stop?: string | readonly string[];
  /** Token ids that end generation (default: the tokenizer's EOS ids). The EOS token is not output. */
  eosTokenIds?: readonly number[];
  /**
   * A consumer that takes a chunk and then neither asks for the next one nor calls `return()` for this many
   * ms has stalled: the generation ends with finishReason "abort" and releases the engine, so later requests
   * and dispose() are not blocked forever (default 60000; 0 = wait for ever).
   */
  stallTimeoutMs?: number;
  /**
   * Called once with the prefill's ForwardPass (logits of the last prompt token and, when the session has
   * taps, the prompt's HiddenStates [L+1, T, d]) before the first decode step. May be async.
   */
  onPrefill?: PrefillHook;
  /** Request the prompt's hidden states in the prefill (default: when onPrefill is set and the session has taps). */
  hidden?: boolean;
  /**
   * Request per-layer token summaries of the prompt in the prefill (`pass.summary` in onPrefill), computed in the
   * decoder graph: what pooling, scoring and fixed probes read, without the [L+1, T, d] tensor (Engine.hasTapSummaries).
   */
  summary?: SummaryRequest;
  /**
   * Called for every generated token (EOS excepted) after the run that fed it and before its text is streamed,
   * e.g. by a response probe (probe/response.ts). Returning { stop: true } ends the generation with
   * finishReason "content_filter"; that token's text is not emitted. The last token also gets its run.
   */
  onDecodeStep?: DecodeStepHook;
  /** Decode runs also return the new token's hidden states [L+1, 1, d] (default: when onDecodeStep is set and the session has taps). */
  decodeHidden?: boolean;
  /** Abort: generation ends at the next step with finishReason "abort". */
  signal?: AbortSignal;
}

/**
 * "eos": an end-of-sequence token; "length": maxTokens reached; "stop": a stop string, or onPrefill
 * returned {stop: true}; "blocked": onPrefill returned {stop: true, blocked: true} (a probe policy refused the
 * request before any decode step); "content_filter": onDecodeStep stopped it mid-answer (a response probe
 * flagged it); "abort": the signal fired or the consumer stopped iterating.
 */
export type FinishReason = "stop" | "length" | "eos" | "abort" | "blocked" | "content_filter";

/** One streamed piece: the sampled token and the text it released (may be "" while text is held back). */
export interface GenerateChunk {
  /** The sampled token id; null for the final chunk that releases held-back text at the end. */
  token: number | null;
  text: string;
}

export interface GenerateTimings {
  /** Wall time of the prefill run (prompt → first logits and hidden states). */
  prefillMs: number;
  /** Wall time of the decode steps (sampling + one run per generated token after the first). */
  decodeMs: number;
  prefillTokensPerS: number;
  /** Decode runs per second (0 when there was none). */
  decodeTokensPerS: number;
  /** Time spent in onPrefill. */
  hookMs: number;
  /** Time spent in onDecodeStep, all steps together. */
  decodeHookMs: number;
}

export interface GenerateResult {
  /** The generated text (= the streamed chunks concatenated), without any stop string. */
  text: string;
  /** Every sampled token except EOS (including the one that completed a stop string). */
  tokens: number[];
  finishReason: FinishReason;
  /** The stop string that ended generation, when finishReason is "stop" because of one. */
  stopString?: string;
  usage: {
    promptTokens: number;
    /** Sampled tokens, EOS included. */
    completionTokens: number;
  };
  timings: GenerateTimings;
}

/**
 * A running (or not yet started) generation: iterate it for streaming chunks, await `result` for the
 * summary. Awaiting `result` without iterating runs the generation to the end. It can be consumed once.
 */
export class Generation implements AsyncIterable<GenerateChunk> {
  private readonly settled: Promise<GenerateResult>;
  private resolve!: (r: GenerateResult) => void;
  private reject!: (e: unknown) => void;
  private started = false;
  private driveScheduled = false;
  /** The run begun by `start()` and its first chunk, held until someone iterates. */
  private primed?: { iterator: AsyncIterator<GenerateChunk>; first: Promise<IteratorResult<GenerateChunk>> };

  /** @param run yields chunks and returns the result; its finally blocks run even when iteration stops early. */
  constructor(
    private readonly run: (state: RunState) => AsyncGenerator<GenerateChunk, GenerateResult>,
    private readonly stallTimeoutMs = DEFAULT_STALL_TIMEOUT_MS,
  ) {
    this.settled = new Promise<GenerateResult>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.settled.catch(() => {}); // failures reach whoever iterates or awaits; never an unhandled rejection
  }

  /**
   * The summary, once generation has ended. If nobody has started iterating by the next turn of the event
   * loop, asking for it runs the generation to the end (chunks discarded, their text is in `result.text`).
   */
  get result(): Promise<GenerateResult> {
    if (!this.driveScheduled) {
      this.driveScheduled = true;
      setImmediate(() => {
        if (!this.started || this.primed !== undefined) void this.drain();
      });
    }
    return this.settled;
  }

  /**
   * The same outcome as `result`, but asking for it starts nothing: it settles when whoever iterates (or
   * awaits `result`) finishes the generation. For observers such as probe hooks.
   */
  get done(): Promise<GenerateResult> {
    return this.settled;
  }

  /** Run to the end and return the result (same as awaiting `result`). */
  complete(): Promise<GenerateResult> {
    if (!this.started || this.primed !== undefined) void this.drain();
    return this.settled;
  }

  /**
   * Starts the run before anyone iterates: the prompt is prefilled (its onPrefill hook runs, so what the hook
   * settles can be awaited first) and the first chunk is held for whoever iterates next or awaits `result`.
   * If nobody takes it within the stall timeout, the run ends like a stalled consumer's (finishReason "abort").
   */
  start(): void {
    if (this.started) return;
    const iterator = this.iterate();
    this.primed = { iterator, first: iterator.next() };
    this.primed.first.catch(() => {}); // failures reach whoever iterates or awaits `result`
  }

  /** Run to the end, discarding chunks (the result promise gets the outcome). */
  private async drain(): Promise<void> {
    try {
      for await (const _ of this) {
        // chunks are part of result.text
      }
    } catch {
      // already delivered through `result`
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<GenerateChunk> {
    const primed = this.primed;
    if (primed === undefined) return this.iterate();
    // started by start(): hand out its held first chunk, then the same run
    this.primed = undefined;
    let first = true;
    return {
      next: () => {
        if (!first) return primed.iterator.next();
        first = false;
        return primed.first;
      },
      return: () => primed.iterator.return!(),
    };
  }

  private iterate(): AsyncIterator<GenerateChunk> {
    if (this.started) throw new InvalidArgumentError("a Generation can be iterated only once");
    this.started = true;
    const state: RunState = { finished: false };
    const inner = this.run(state);
    // The run is suspended at a `yield` (holding the engine) while the consumer holds a chunk: a watchdog
    // armed after each chunk ends it if the consumer neither pulls again nor returns within the timeout.
    let watchdog: NodeJS.Timeout | undefined;
    let stopped: Promise<void> | undefined;
    const disarm = () => {
      clearTimeout(watchdog);
      watchdog = undefined;
    };
    // The consumer stopped (return()) or stalled: finish the run (its finally releases the session), report "abort".
    const stop = (): Promise<void> =>
      (stopped ??= (async () => {
        state.stoppedByConsumer = true;
        try {
          const r = await inner.return(undefined as never);
          if (state.partial !== undefined) this.resolve(state.partial());
          else if (r.done && r.value !== undefined) this.resolve(r.value);
        } catch (err) {
          this.reject(err);
        }
      })());
    const arm = () => {
      // (setTimeout treats Infinity and delays past 2^31-1 ms as 1 ms: those mean "never")
      if (this.stallTimeoutMs > 0 && this.stallTimeoutMs <= 0x7fffffff) {
        // not unref'd: requests queued behind the stalled one must still run when nothing else keeps Node alive
        watchdog = setTimeout(() => void stop(), this.stallTimeoutMs);
      }
    };
    return {
      next: async () => {
        disarm();
        if (stopped !== undefined) {
          await stopped;
          return { done: true, value: undefined };
        }
        try {
          const r = await inner.next();
          if (r.done) {
            this.resolve(r.value);
            return { done: true, value: undefined };
          }
          arm();
          return r;
        } catch (err) {
          this.reject(err);
          throw err;
        }
      },
      return: async () => {
        disarm();
        await stop();
        return { done: true, value: undefined };
      },
    };
  }
}

/** How long a consumer may hold a chunk without pulling the next one before its generation is ended. */
export const DEFAULT_STALL_TIMEOUT_MS = 60_000;

/** Shared between a Generation and its run: lets an early `return()` still produce a result. */
export interface RunState {
  finished: boolean;
  stoppedByConsumer?: boolean;
  /** The result so far (finishReason "abort"), set by the run once it has started. */
  partial?: () => GenerateResult;
}

/** Where a prompt came from, for error messages. */
export interface GenerateSource {
  /** Model file (names the context_length field's origin in ContextOverflowError). */
  file?: string;
}

/** Checks generation options; throws InvalidArgumentError naming the field. */
export function checkGenerateOptions(options: GenerateOptions): void {
  checkSamplingOptions(options);
  const { maxTokens } = options;
  if (maxTokens !== undefined && !(Number.isInteger(maxTokens) && maxTokens >= 0)) {
    throw new InvalidArgumentError(`maxTokens must be an integer ≥ 0, got ${maxTokens}`, { field: "maxTokens" });
  }
  if (options.onPrefill !== undefined && typeof options.onPrefill !== "function") {
    throw new InvalidArgumentError("onPrefill must be a function", { field: "onPrefill" });
  }
  const { stallTimeoutMs } = options;
  if (stallTimeoutMs !== undefined && !(typeof stallTimeoutMs === "number" && stallTimeoutMs >= 0 && !Number.isNaN(stallTimeoutMs))) {
    throw new InvalidArgumentError(`stallTimeoutMs must be a number of ms ≥ 0, got ${JSON.stringify(stallTimeoutMs)}`, { field: "stallTimeoutMs" });
  }
  // Plain-JS callers get the same typed errors as TypeScript ones would get from the compiler.
  const { stop, eosTokenIds } = options as { stop?: unknown; eosTokenIds?: unknown };
  if (stop !== undefined && typeof stop !== "string" && !(Array.isArray(stop) && stop.every((x) => typeof x === "string"))) {
    throw new InvalidArgumentError(`stop must be a string or an array of strings, got ${JSON.stringify(stop)}`, { field: "stop" });
  }
  if (eosTokenIds !== undefined && !(Array.isArray(eosTokenIds) && eosTokenIds.every((t) => Number.isInteger(t) && t >= 0))) {
    throw new InvalidArgumentError(`eosTokenIds must be an array of token ids (integers ≥ 0), got ${JSON.stringify(eosTokenIds)}`, { field: "eosTokenIds" });
  }
  if (options.onDecodeStep !== undefined && typeof options.onDecodeStep !== "function") {
    throw new InvalidArgumentError("onDecodeStep must be a function", { field: "onDecodeStep" });
  }
}

/**
 * Generate from `promptTokens` on `session` (its KV cache is reset first). Options are checked and the
 * context budget enforced immediately (ContextOverflowError); the model runs only when the returned
 * Generation is iterated or its `result` awaited.
 */
export function generate(
  session: DecoderSession,
  tokenizer: Tokenizer,
  promptTokens: readonly number[],
  options: GenerateOptions = {},
  source: GenerateSource = {},
): Generation {
  const plan = planGeneration(session, tokenizer, promptTokens, options, source);
  return new Generation((state) => runGeneration(sessionRunner(session), tokenizer, plan, state), options.stallTimeoutMs);
}

/** Validated inputs of one generation. */
export interface GenerationPlan {
  prompt: number[];
  options: GenerateOptions;
  maxTokens: number;
  stops: string[];
  eos: Set<number>;
}

/** Validate and resolve defaults; throws before any model work. */
export function planGeneration(
  session: Pick<DecoderSession, "contextLength" | "vocabSize">,
  tokenizer: Pick<Tokenizer, "eosTokenIds">,
  promptTokens: readonly number[],
  options: GenerateOptions,
  source: GenerateSource = {},
): GenerationPlan {
  checkGenerateOptions(options);
  if (promptTokens.length === 0) {
    throw new InvalidArgumentError("the prompt has no tokens (it needs at least BOS)", { field: "prompt" });
  }
  promptTokens.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t >= session.vocabSize) {
      throw new InvalidArgumentError(`prompt token ${t} is not in the vocabulary (size ${session.vocabSize})`, { field: "prompt", offset: i });
    }
  });
  // default budget: 256, or what the context leaves
  const maxTokens = options.maxTokens ?? Math.max(0, Math.min(256, session.contextLength - promptTokens.length));
  const needed = promptTokens.length + maxTokens;
  // the prompt alone overflows: name that limit (a classify-only run asks for maxTokens 0, which is not the cause)
  if (promptTokens.length > session.contextLength) {
    throw new ContextOverflowError(`the prompt has ${promptTokens.length} tokens, which exceeds the context window of ${session.contextLength}`, {
      file: source.file,
      field: "context_length",
    });
  }
  if (needed > session.contextLength) {
    throw new ContextOverflowError(
      `prompt (${promptTokens.length} tokens) + maxTokens (${maxTokens}) = ${needed} exceeds the context window of ${session.contextLength}`,
      { file: source.file, field: "context_length" },
    );
  }
  const stops = options.stop === undefined ? [] : typeof options.stop === "string" ? [options.stop] : [...options.stop];
  new StopStringMatcher(stops); // validates
  const eos = new Set(options.eosTokenIds ?? tokenizer.eosTokenIds);
  return { prompt: [...promptTokens], options, maxTokens, stops, eos };
}

/**
 * The loop itself, as an async generator (the Generation wrapper handles result/early exit). The model is
 * reached through `runner`: the session itself, or one sequence of a batch (engine/batch.ts), whose decode calls
 * share ORT runs with other requests. The runner is closed when the loop ends, however it ends.
 */
export async function* runGeneration(
  runner: SequenceRunner,
  tokenizer: Tokenizer,
  plan: GenerationPlan,
  state: RunState,
): AsyncGenerator<GenerateChunk, GenerateResult> {
  try {
    return yield* generationLoop(runner, tokenizer, plan, state);
  } finally {
    runner.close();
  }
}

async function* generationLoop(
  session: SequenceRunner,
  tokenizer: Tokenizer,
  plan: GenerationPlan,
  state: RunState,
): AsyncGenerator<GenerateChunk, GenerateResult> {
  const { prompt, options, maxTokens, eos } = plan;
  const sampler = new Sampler(options);
  const matcher = new StopStringMatcher(plan.stops);
  // the prompt's last tokens give the first generated token its context (" there" after "time,", but
  // "Once" right after BOS), so prompt text + generated text reads as one decode
  const detok = createTextStreamer(tokenizer, { contextIds: prompt.slice(-4) });
  const tokens: number[] = [];
  let text = "";
  let sampled = 0;
  let finishReason: FinishReason = "abort";
  let stopString: string | undefined;
  const timings: GenerateTimings = { prefillMs: 0, decodeMs: 0, prefillTokensPerS: 0, decodeTokensPerS: 0, hookMs: 0, decodeHookMs: 0 };
  let decodeRuns = 0;
  let decodeStart = 0;
  const result = (): GenerateResult => {
    if (decodeStart > 0) timings.decodeMs = performance.now() - decodeStart;
    timings.prefillTokensPerS = timings.prefillMs > 0 ? (prompt.length * 1000) / timings.prefillMs : 0;
    timings.decodeTokensPerS = timings.decodeMs > 0 ? (decodeRuns * 1000) / timings.decodeMs : 0;
    return {
      text,
      tokens: [...tokens],
      finishReason,
      ...(stopString !== undefined ? { stopString } : {}),
      usage: { promptTokens: prompt.length, completionTokens: sampled },
      timings: { ...timings },
    };
  };
  state.partial = result;
  const aborted = (): boolean => options.signal?.aborted === true;
  /**
   * At the end, release everything: the incomplete-character tail of the detokenizer, then what the stop
   * matcher held back, unless that tail completes a stop string (then the text ends before it).
   */
  const releaseHeld = (): { text: string; stop?: string } => {
    const tail = matcher.push(detok.flush());
    return tail.stopped ? { text: tail.text, stop: tail.stop } : { text: tail.text + matcher.flush() };
  };

  if (aborted()) return result();
  const wantHidden = options.hidden ?? (options.onPrefill !== undefined && session.hasTaps && options.summary === undefined);
  const t0 = performance.now();
  let pass = await session.prefill(prompt, { hidden: wantHidden, ...(options.summary !== undefined ? { summary: options.summary } : {}) });
  timings.prefillMs = performance.now() - t0;

  if (options.onPrefill !== undefined) {
    const h0 = performance.now();
    const decision = await options.onPrefill(pass, { promptTokens: prompt });
    timings.hookMs = performance.now() - h0;
    if (decision && decision.stop === true) {
      finishReason = decision.blocked === true ? "blocked" : "stop";
      state.finished = true;
      return result();
    }
  }
  if (maxTokens === 0) {
    finishReason = "length";
    state.finished = true;
    return result();
  }

  decodeStart = performance.now();
  const vocab = session.vocabSize;
  const onStep = options.onDecodeStep;
  const decodeHidden = options.decodeHidden ?? (onStep !== undefined && session.hasTaps);
  for (;;) {
    if (aborted()) {
      finishReason = "abort";
      break;
    }
    const row = pass.logits.subarray((pass.positions - 1) * vocab, pass.positions * vocab); // [V] last position
    const token = nextToken(sampler, row, tokens.length);
    sampled++;
    if (eos.has(token)) {
      finishReason = "eos";
      break;
    }
    // moderated decoding: the token's own run comes first, so its hidden states are judged before its text
    let fed: ForwardPass | undefined;
    if (onStep !== undefined) {
      fed = await session.decode(token, { hidden: decodeHidden });
      decodeRuns++;
      const m0 = performance.now();
      const decision = await onStep({ index: tokens.length, token, pass: fed });
      timings.decodeHookMs += performance.now() - m0;
      if (decision && decision.stop === true) {
        finishReason = "content_filter";
        break;
      }
    }
    tokens.push(token);
    const check = matcher.push(detok.push(token));
    let piece = check.text;
    if (check.stopped) {
      finishReason = "stop";
      stopString = check.stop;
      text += piece;
      yield { token, text: piece };
      state.finished = true;
      return result();
    }
    if (tokens.length >= maxTokens) {
      // the last token's chunk also carries everything still held back
      const tail = releaseHeld();
      piece += tail.text;
      finishReason = tail.stop !== undefined ? "stop" : "length";
      stopString = tail.stop;
      text += piece;
      yield { token, text: piece };
      state.finished = true;
      return result();
    }
    text += piece;
    yield { token, text: piece };
    if (fed !== undefined) pass = fed;
    else {
      pass = await session.decode(token, { hidden: decodeHidden });
      decodeRuns++;
    }
  }
  // "eos", "content_filter" or "abort": what was held back (earlier tokens' text) comes as a final chunk without a token
  const tail = releaseHeld();
  if (tail.stop !== undefined && finishReason !== "content_filter") {
    finishReason = "stop";
    stopString = tail.stop;
  }
  if (tail.text.length > 0) {
    text += tail.text;
    yield { token: null, text: tail.text };
  }
  state.finished = true;
  return result();
}

/**
 * NaN or +Inf logits (a corrupt weight, an overflow) would sample token 0 over and over and print nothing:
 * a typed error names the step instead. The exact scan over [V]; greedy decoding runs it only when its pick's
 * sums found a logit that is not finite (nextToken).
 */
function checkFiniteLogits(row: Float32Array, step: number): void {
  for (let i = 0; i < row.length; i++) {
    if (Number.isNaN(row[i]) || row[i] === Infinity) { // -Inf is a masked token, not garbage
      throw new NonFiniteError(`the model produced ${row[i]} logits (token ${i}) at ${step === 0 ? "the prefill" : `decode step ${step}`}: its weights hold NaN/Inf values or overflow`, { field: "logits" });
    }
  }
}

/** The token sampled from a row of logits [V] after the finiteness check; greedy decoding does both in one pass (greedyPick). */
function nextToken(sampler: Sampler, row: Float32Array, step: number): number {
  if (sampler.greedy) {
    const { token, finite } = greedyPick(row);
    if (!finite) checkFiniteLogits(row, step); // NaN, +Inf or a masked -Inf: the exact scan tells them apart
    return token;
  }
  checkFiniteLogits(row, step);
  return sampler.sample(row);
}
