/**
 * Continuous batching: many generations share one DecoderSession (one copy of the weights). Each request owns a
 * sequence of the session's BatchDecoder (its own KV cache slot); the scheduler turns their single-token decode
 * calls into one ORT run per step (batch = every request waiting for its next token), and runs prefills and other
 * one-off jobs (Engine.forward) between steps: up to `prefillChunk` prompt tokens between two decode steps, so
 * that a new prompt neither waits for the running requests to finish nor stalls them for more than one chunk's
 * worth of prefill, and several short prompts arriving together are all prefilled before the next step (their
 * requests then join it, instead of each later one missing a step: 8 streams with 32-token prompts averaged 6.1
 * rows per decode run when one prefill alternated with one step).
 *
 * A request that does not ask for its next token (its consumer is slow, its onPrefill hook is running) simply
 * sits out the steps until it does; a finished or aborted one closes its sequence between two runs. Runs never
 * overlap. Between two runs the scheduler yields to the event loop once (setImmediate), so that every consumer
 * that reacts to its token within the same turn asks again in time to join the next step.
 */
import { InvalidArgumentError } from "../errors.js";
import { HiddenStates, concatTokens } from "../types/hidden.js";
import { acrossRuns } from "../types/summary.js";
import type { BatchDecoder, DecoderSession, ForwardOptions, ForwardPass, SequenceHandle } from "./types.js";

/** What the generation loop needs from the model for one request (engine/generate.ts). */
export interface SequenceRunner {
  readonly vocabSize: number;
  readonly hasTaps: boolean;
  /** Prefills can return per-layer token summaries (ForwardOptions.summary). */
  readonly hasTapSummaries: boolean;
  /** The prompt, from an empty cache. */
  prefill(tokens: readonly number[], options: ForwardOptions): Promise<ForwardPass>;
  /** One generated token; `hidden` asks for its hidden states [L+1, 1, d]. */
  decode(token: number, options?: { hidden?: boolean }): Promise<ForwardPass>;
  /** Ends the request: frees its cache (idempotent). */
  close(): void;
}

/** A runner over a session's own single sequence (the caller makes sure nothing else uses the session meanwhile). */
export function sessionRunner(session: DecoderSession): SequenceRunner {
  return {
    vocabSize: session.vocabSize,
    hasTaps: session.hasTaps,
    hasTapSummaries: session.hasTapSummaries === true,
    prefill: (tokens, options) => {
      session.reset();
      return session.forward(tokens, options);
    },
    decode: (token, options) => session.forward([token], options),
    close: () => {},
  };
}

export interface BatchSchedulerOptions {
  /** Most sequences in one decode run (default 16). */
  maxBatch?: number;
  /**
   * Most requests holding a KV cache slot at once (default 32); further requests wait for their prefill until
   * one ends. Bounds memory: each slot holds up to contextLength positions of every layer.
   */
  maxSequences?: number;
  /**
   * Most prompt tokens prefilled between two decode steps (default 256): a longer prompt runs as several solo
   * jobs through its KV cache (same results), and shorter prompts waiting together run back to back up to this
   * many tokens, so running requests wait at most about one such piece per step.
   */
  prefillChunk?: number;
}

interface DecodeWait {
  seq: SequenceHandle;
  token: number;
  hidden: boolean;
  resolve: (p: ForwardPass) => void;
  reject: (e: unknown) => void;
}

interface SoloJob {
  /** Needs a new sequence slot (a prefill): waits while maxSequences are open. */
  opensSequence: boolean;
  /** Prompt tokens it runs (counted against the prefill budget between decode steps); Infinity = unknown. */
  tokens: number;
  run: () => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** The passes of a prompt's consecutive pieces as one pass: hidden states [L+1, ΣT, d], logits as asked. */
function joinPasses(passes: ForwardPass[], allLogits: boolean): ForwardPass {
  if (passes.length === 1) return passes[0];
  const last = passes[passes.length - 1];
  const runMs = passes.reduce((a, p) => a + p.runMs, 0);
  let logits = last.logits;
  let positions = last.positions;
  if (allLogits) {
    // logits "all": [ΣT, V]
    const V = last.logits.length / last.positions;
    positions = passes.reduce((a, p) => a + p.positions, 0);
    logits = new Float32Array(positions * V); // [ΣT, V]
    let row = 0;
    for (const p of passes) {
      logits.set(p.logits, row * V);
      row += p.positions;
    }
  }
  const out: ForwardPass = { logits, positions, runMs };
  // the pieces' partial aggregates combine exactly (types/summary.ts)
  // (pieces after a summary's `upTo` cut carry none)
  const summaries = passes.flatMap((p) => (p.summary !== undefined ? [p.summary] : []));
  if (summaries.length > 0) out.summary = summaries.slice(1).reduce((a, s) => a.then(s), summaries[0]);
  if (passes.every((p) => p.hidden !== undefined)) {
    const parts = passes.map((p) => p.hidden!);
    const { layers, dim } = parts[0];
    const T = parts.reduce((a, h) => a + h.tokens, 0);
    out.hidden = new HiddenStates(layers, T, dim, concatTokens(parts, layers, dim)); // [L+1, ΣT, d]
  }
  return out;
}

export class BatchScheduler {
  private readonly maxBatch: number;
  private readonly maxSequences: number;
  private readonly prefillChunk: number;
  private readonly decodes: DecodeWait[] = [];
  private readonly solos: SoloJob[] = [];
  private readonly toClose: SequenceHandle[] = [];
  private open = 0;
  private running = false;
  private scheduled = false;
  /** Prompt tokens run by solo jobs since the last decode step. */
  private tokensSinceDecode = 0;
  private idleWaiters: (() => void)[] = [];
  /** Decode runs so far and the sequences they carried (for benchmarks: mean batch = rows / runs). */
  readonly stats = { decodeRuns: 0, decodeRows: 0, soloRuns: 0 };

  constructor(
    private readonly session: DecoderSession & { batch: BatchDecoder },
    options: BatchSchedulerOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 16;
    this.maxSequences = options.maxSequences ?? 32;
    this.prefillChunk = options.prefillChunk ?? 256;
    for (const [k, v] of [["maxBatch", this.maxBatch], ["maxSequences", this.maxSequences], ["prefillChunk", this.prefillChunk]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(`${k} must be a positive integer, got ${v}`, { field: k });
    }
  }

  /** Runs `fn` alone on the session between two decode steps (e.g. a forward pass on the session's own sequence). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.enqueueSolo(false, Infinity, fn);
  }

  /** A runner for one request: its prefill opens a sequence, its decode calls join the batched steps. */
  runner(): SequenceRunner {
    const batch = this.session.batch;
    let seq: SequenceHandle | undefined;
    let closed = false;
    return {
      vocabSize: this.session.vocabSize,
      hasTaps: this.session.hasTaps,
      hasTapSummaries: this.session.hasTapSummaries === true,
      prefill: async (tokens, options) => {
        const passes: ForwardPass[] = [];
        let off = 0;
        do {
          // each piece is its own solo job: decode steps of the running requests come in between
          const first = passes.length === 0;
          passes.push(
            await this.enqueueSolo(first, Math.max(1, Math.min(this.prefillChunk, tokens.length - off)), async () => {
              if (closed) throw new InvalidArgumentError("prefill() after close()", { field: "sequence" });
              if (first) {
                if (seq !== undefined) this.release(seq);
                seq = batch.openSequence();
                this.open++;
              }
              // with nothing else waiting (no decode step, no other job, no other request holding a sequence) the
              // rest of the prompt goes in one call, which the session runs in as few ORT runs as its maxChunk
              // allows: no pieces to join afterwards (with hidden states, a copy of [L+1, T, d] less)
              const alone = this.decodes.length === 0 && this.solos.length === 0 && this.open === 1;
              const piece = tokens.slice(off, alone ? tokens.length : off + this.prefillChunk); // forwardSequence reports an empty prompt
              off += piece.length;
              // a summary cut at upTo prompt tokens: this piece's share of it (none once past the cut)
              const s = options.summary;
              const at = off - piece.length; // this piece's first token
              const share = s === undefined || (s.upTo !== undefined && s.upTo <= at) ? undefined : s.upTo === undefined ? s : { ...s, upTo: s.upTo - at };
              // attention reads need every summarised token in one piece (types/summary.ts)
              const onePiece = at === 0 && (piece.length === tokens.length || (s?.upTo !== undefined && s.upTo <= piece.length));
              const summary = share === undefined || onePiece ? share : acrossRuns(share);
              return batch.forwardSequence(seq!, piece, { hidden: options.hidden, logits: options.logits, ...(summary !== undefined ? { summary } : {}) });
            }),
          );
        } while (off < tokens.length);
        return joinPasses(passes, options.logits === "all");
      },
      decode: (token, options) => {
        if (seq === undefined || closed) return Promise.reject(new InvalidArgumentError("decode() before prefill() or after close()", { field: "sequence" }));
        const s = seq;
        return new Promise<ForwardPass>((resolve, reject) => {
          this.decodes.push({ seq: s, token, hidden: options?.hidden === true, resolve, reject });
          this.kick();
        });
      },
      close: () => {
        if (closed) return;
        closed = true;
        if (seq !== undefined) this.release(seq);
      },
    };
  }

  /** Resolves once nothing is queued, running or holding a sequence. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private isIdle(): boolean {
    return !this.running && this.decodes.length === 0 && this.solos.length === 0 && this.open === 0;
  }

  private release(seq: SequenceHandle): void {
    this.toClose.push(seq);
    this.open--;
    this.kick();
  }

  private enqueueSolo<T>(opensSequence: boolean, tokens: number, run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.solos.push({ opensSequence, tokens, run, resolve: resolve as (v: unknown) => void, reject });
      this.kick();
    });
  }

  /** Schedules the next tick (after the current event-loop turn: consumers re-submit first). */
  private kick(): void {
    if (this.running || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.tick();
    });
  }

  /** The next solo job that may start now (prefills wait while maxSequences sequences are open). */
  private nextSolo(): number {
    return this.solos.findIndex((j) => !j.opensSequence || this.open < this.maxSequences);
  }

  private async tick(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      // sequences that ended leave between runs (their cache slot is not being read now)
      for (const seq of this.toClose.splice(0)) this.session.batch.closeSequence(seq);
      const solo = this.nextSolo();
      // between two decode steps: at least one solo job, more while their prompt tokens fit in prefillChunk
      const doSolo =
        solo >= 0 &&
        (this.decodes.length === 0 || this.tokensSinceDecode === 0 || this.tokensSinceDecode + this.solos[solo].tokens <= this.prefillChunk);
      if (doSolo) {
        const [job] = this.solos.splice(solo, 1);
        this.tokensSinceDecode += job.tokens;
        this.stats.soloRuns++;
        try {
          job.resolve(await job.run());
        } catch (e) {
          job.reject(e);
        }
      } else if (this.decodes.length > 0) {
        this.tokensSinceDecode = 0;
        await this.step(this.decodes.splice(0, this.maxBatch));
      }
    } finally {
      this.running = false;
    }
    if (this.decodes.length > 0 || this.nextSolo() >= 0 || this.toClose.length > 0) this.kick();
    else if (this.isIdle()) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async step(wait: DecodeWait[]): Promise<void> {
    this.stats.decodeRuns++;
    this.stats.decodeRows += wait.length;
    try {
      const passes = await this.session.batch.decodeStep(
        wait.map((w) => w.seq),
        wait.map((w) => w.token),
        { hidden: wait.some((w) => w.hidden) },
      );
      wait.forEach((w, i) => {
        const p = passes[i];
        if (!w.hidden) delete p.hidden;
        w.resolve(p);
      });
    } catch (e) {
      for (const w of wait) w.reject(e);
    }
  }
}
