/**
 * The facade users import: one loaded model, its tokenizer and one ORT decoder session (one copy of the weights).
 * Concurrent generations decode together, one ORT run per step for all of them (continuous batching,
 * engine/batch.ts), with prefills of new requests between steps; graphs without a batch dimension (third-party
 * exports) serve one request at a time. Generation and single forward passes both go through here, so the
 * hidden states a probe sees are the ones of the same run that produced the first logits.
 *
 *   const engine = await Engine.load();                       // the built-in stories260K
 *   const gen = engine.generate({ prompt: "Once upon a time", maxTokens: 50, temperature: 0 });
 *   for await (const chunk of gen) process.stdout.write(chunk.text);
 *   const { finishReason, timings } = await gen.result;
 */
import { ContextOverflowError, InvalidArgumentError, ModelFormatError } from "../errors.js";
import { defaultModelPath, loadModel } from "../model/load.js";
import { isOnnxModel } from "../model/onnx/index.js";
import type { LoadedModel, ModelSpec } from "../model/spec.js";
import { chatTemplateFor, encodeChat, renderChatTemplate } from "../tokenizer/chat.js";
import { tokenizerFromGgufMetadata } from "../tokenizer/gguf.js";
import { tokenizerFromHfFolder } from "../tokenizer/hf.js";
import type { ChatMessage, Tokenizer } from "../tokenizer/types.js";
import { BatchScheduler, sessionRunner, type BatchSchedulerOptions } from "./batch.js";
import { Generation, planGeneration, runGeneration, type GenerateOptions } from "./generate.js";
import { openOnnxModelSession } from "./onnx-model.js";
import { createDecoderSession, type DecoderSessionOptions } from "./session.js";
import { resolveExecutionProviders, type DeviceRequest } from "./providers.js";
import type { BatchDecoder, DecoderSession, ForwardOptions, ForwardPass } from "./types.js";

export interface EngineOptions extends DecoderSessionOptions, BatchSchedulerOptions {
  /**
   * Where the model runs: "cpu", "cuda" (a typed error with the install command when the CUDA provider is not
   * installed), "auto" (CUDA when it loads, else CPU with a one-line notice), or ORT provider names. Resolved by
   * engine/providers.ts into executionProviders; when absent, executionProviders (default ["cpu"]) applies.
   */
  device?: DeviceRequest;
}

/** One generation request: a prompt (text or token ids) or chat messages, plus generation options. */
export interface GenerateRequest extends GenerateOptions {
  /** Text (encoded with the tokenizer's default BOS handling) or token ids used as they are. */
  prompt?: string | readonly number[];
  /** A conversation, rendered with the model's chat template (a generation prompt is appended). */
  messages?: readonly ChatMessage[];
  /** With `chat: true` (or `messages`): a system message put first. */
  system?: string;
  /** Treat a text `prompt` as one user message and apply the chat template. */
  chat?: boolean;
}

/** Serialises requests: each `run` starts when the previous one has finished. */
class RequestQueue {
  private tail: Promise<void> = Promise.resolve();
  /** Waits for the turn; returns the function that ends it. */
  async acquire(): Promise<() => void> {
    let release!: () => void;
    const turn = new Promise<void>((r) => (release = r));
    const previous = this.tail;
    this.tail = previous.then(() => turn);
    await previous;
    return release;
  }
}

/** The GGUF metadata loadModel kept for a GGUF model (always there for format "gguf"). */
function ggufMetadataOf(model: LoadedModel, path: string): NonNullable<LoadedModel["ggufMetadata"]> {
  if (model.ggufMetadata === undefined) throw new ModelFormatError("GGUF model loaded without its metadata", { file: path });
  return model.ggufMetadata;
}

/** Counts of ORT runs since the engine was loaded (observability, and tests that check "no decode step ran"). */
export interface EngineStats {
  /** Runs that started a sequence (generation prefills and forward() calls). */
  prefills: number;
  /** Runs that appended to a cached sequence: one per decode step. */
  decodeSteps: number;
}

/** Counts a batch decoder's runs: a sequence's first piece of prompt is a prefill, each batched step one decode step. */
function countingBatch(inner: BatchDecoder, stats: EngineStats): BatchDecoder {
  return {
    openSequence: () => inner.openSequence(),
    closeSequence: (seq) => inner.closeSequence(seq),
    forwardSequence: (seq, tokens, options) => {
      if (seq.length === 0) stats.prefills++;
      return inner.forwardSequence(seq, tokens, options);
    },
    decodeStep: (seqs, tokens, options) => {
      stats.decodeSteps++;
      return inner.decodeStep(seqs, tokens, options);
    },
  };
}

/** Wraps a session to count its runs: a run on an empty KV cache is a prefill, any later run a decode step. */
class CountingSession implements DecoderSession {
  constructor(private readonly inner: DecoderSession, private readonly stats: EngineStats) {
    if (inner.batch !== undefined) this.batch = countingBatch(inner.batch, stats);
  }
  get vocabSize(): number { return this.inner.vocabSize; }
  get contextLength(): number { return this.inner.contextLength; }
  get pastLength(): number { return this.inner.pastLength; }
  get hasTaps(): boolean { return this.inner.hasTaps; }
  get hasTapSummaries(): boolean { return this.inner.hasTapSummaries === true; }
  forward(tokens: readonly number[], options?: ForwardOptions): Promise<ForwardPass> {
    if (this.inner.pastLength === 0) this.stats.prefills++;
    else this.stats.decodeSteps++;
    return this.inner.forward(tokens, options);
  }
  reset(): void { this.inner.reset(); }
  truncate(n: number): void { this.inner.truncate(n); }
  readonly batch?: BatchDecoder;
  dispose(): Promise<void> { return this.inner.dispose(); }
}

export class Engine {
  /** Whole-request turns, for sessions that cannot batch. */
  private readonly queue = new RequestQueue();
  /** Batched decoding, when the session supports it. */
  private readonly scheduler?: BatchScheduler;
  private disposed = false;
  /** Live counters of the session's runs (read them; the engine updates them). */
  readonly stats: EngineStats = { prefills: 0, decodeSteps: 0 };
  private readonly session: DecoderSession;

  private constructor(
    /** The model file or folder. */
    readonly path: string,
    readonly model: LoadedModel,
    readonly tokenizer: Tokenizer,
    session: DecoderSession,
    batchOptions: BatchSchedulerOptions = {},
  ) {
    this.session = new CountingSession(session, this.stats);
    const s = this.session;
    if (s.batch !== undefined) this.scheduler = new BatchScheduler(s as DecoderSession & { batch: NonNullable<DecoderSession["batch"]> }, batchOptions);
  }

  /** Whether concurrent generations decode together (false: they take turns). */
  get batched(): boolean {
    return this.scheduler !== undefined;
  }

  /** Decode runs and the rows they carried so far (mean batch size = decodeRows / decodeRuns); zeros when not batched. */
  get batchStats(): { decodeRuns: number; decodeRows: number; soloRuns: number } {
    return { ...(this.scheduler?.stats ?? { decodeRuns: 0, decodeRows: 0, soloRuns: 0 }) };
  }

  /**
   * Load a model, its tokenizer, and an ORT session. `path`: a .gguf file or a Hugging Face folder (our graph,
   * built once and cached under `cacheDir`), an Optimum / onnx-community export folder (its graph, tapped by
   * surgery in memory), or a `onepass convert --to onnx` folder (its graph as it is); undefined = the built-in
   * stories260K. Every source gives the same ForwardPass / HiddenStates / generation behaviour.
   */
  static async load(path?: string, engineOptions: EngineOptions = {}): Promise<Engine> {
    const modelPath = path ?? defaultModelPath();
    // the device is checked before the model is read, so a missing provider fails fast
    const { device, maxBatch, maxSequences, prefillChunk, ...options } = engineOptions;
    if (device !== undefined) options.executionProviders = await resolveExecutionProviders(device);
    const model = await loadModel(modelPath);
    try {
      let tokenizer: Tokenizer;
      let session: DecoderSession;
      // loadModel decided the format; the tokenizer comes from what it already read
      if (isOnnxModel(model)) {
        tokenizer = await tokenizerFromHfFolder(model.onnx.dir);
        session = await openOnnxModelSession(model, options);
      } else {
        tokenizer = model.format === "hf" ? await tokenizerFromHfFolder(modelPath) : tokenizerFromGgufMetadata(ggufMetadataOf(model, modelPath), modelPath);
        session = await createDecoderSession(model, options);
      }
      try {
        return new Engine(modelPath, model, tokenizer, session, { maxBatch, maxSequences, prefillChunk });
      } catch (err) {
        await session.dispose();
        throw err;
      }
    } catch (err) {
      model.weights.close();
      throw err;
    }
  }

  get spec(): ModelSpec {
    return this.model.spec;
  }

  /** sha256 identity of the weights: probes record it and refuse other models. */
  get fingerprint(): string {
    return this.model.fingerprint;
  }

  /** Whether forward/generate can return hidden states (the session was built with taps). */
  get hasTaps(): boolean {
    return this.session.hasTaps;
  }

  get contextLength(): number {
    return this.session.contextLength;
  }

  /**
   * Whether forward/generate can return per-layer token summaries of the prompt (ForwardOptions.summary,
   * GenerateOptions.summary) computed in the decoder graph: onepass's own graphs built with taps.
   */
  get hasTapSummaries(): boolean {
    return this.session.hasTapSummaries === true;
  }

  /** Render a conversation with the model's chat template (ChatML when the model has none). */
  applyChatTemplate(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    return renderChatTemplate(chatTemplateFor(this.tokenizer), {
      messages,
      addGenerationPrompt: options.addGenerationPrompt ?? true,
      bosToken: this.tokenizer.bosToken,
      eosToken: this.tokenizer.eosToken,
    });
  }

  /** The token ids a request's prompt becomes (chat template applied where asked). */
  promptTokens(request: Pick<GenerateRequest, "prompt" | "messages" | "system" | "chat">): number[] {
    const { prompt, messages, system, chat } = request;
    if (prompt !== undefined && messages !== undefined) {
      throw new InvalidArgumentError("give either prompt or messages, not both", { field: "messages" });
    }
    if (messages !== undefined || chat === true) {
      if (prompt !== undefined && typeof prompt !== "string") {
        throw new InvalidArgumentError("a chat prompt must be text, not token ids", { field: "prompt" });
      }
      const turns: ChatMessage[] = [
        ...(system !== undefined ? [{ role: "system", content: system }] : []),
        ...(messages ?? [{ role: "user", content: prompt ?? "" }]),
      ];
      return encodeChat(this.tokenizer, turns, { addGenerationPrompt: true });
    }
    if (system !== undefined) {
      throw new InvalidArgumentError("system needs chat: true or messages", { field: "system" });
    }
    if (prompt === undefined) throw new InvalidArgumentError("a request needs a prompt or messages", { field: "prompt" });
    if (typeof prompt === "string") return this.tokenizer.encode(prompt);
    if (!Array.isArray(prompt)) throw new InvalidArgumentError("prompt must be a string or an array of token ids", { field: "prompt" });
    return [...prompt];
  }

  /**
   * Start a generation. Bad requests and context overflow throw here, synchronously; the model runs when
   * the returned Generation is iterated (streaming chunks) or its `result` awaited. Concurrent generations
   * decode together (see `batched`); each gets the tokens, hidden states and probe results it would get alone.
   */
  generate(request: GenerateRequest): Generation {
    this.checkOpen();
    if (request === null || typeof request !== "object") throw new InvalidArgumentError("generate() needs a request object", { field: "request" });
    const prompt = this.promptTokens(request);
    const plan = planGeneration(this.session, this.tokenizer, prompt, request, { file: this.path });
    const queue = this.queue;
    const session = this.session;
    const tokenizer = this.tokenizer;
    const scheduler = this.scheduler;
    if (scheduler !== undefined) return new Generation((state) => runGeneration(scheduler.runner(), tokenizer, plan, state));
    return new Generation(async function* (state) {
      const release = await queue.acquire();
      try {
        return yield* runGeneration(sessionRunner(session), tokenizer, plan, state);
      } finally {
        release();
      }
    }, request.stallTimeoutMs);
  }

  /**
   * One forward pass over a prompt, without generating: logits of the last (or every) position and, with
   * `hidden: true`, the HiddenStates [L+1, T, d]. Text is encoded with the tokenizer's default BOS handling.
   */
  async forward(input: string | readonly number[], options: ForwardOptions = {}): Promise<ForwardPass> {
    this.checkOpen();
    const tokens = typeof input === "string" ? this.tokenizer.encode(input) : [...input];
    if (tokens.length === 0) throw new InvalidArgumentError("forward() needs at least one token", { field: "input" });
    if (tokens.length > this.session.contextLength) {
      throw new ContextOverflowError(`${tokens.length} tokens exceed the context window of ${this.session.contextLength}`, {
        file: this.path,
        field: "context_length",
      });
    }
    if (options.hidden === true && !this.session.hasTaps) {
      throw new InvalidArgumentError("hidden states need an engine loaded with taps: true", { field: "hidden" });
    }
    const run = async () => {
      this.session.reset();
      try {
        return await this.session.forward(tokens, options);
      } finally {
        this.session.reset(); // nothing continues this sequence: free its cache rows for the batch
      }
    };
    if (this.scheduler !== undefined) return this.scheduler.exclusive(run);
    const release = await this.queue.acquire();
    try {
      return await run();
    } finally {
      release();
    }
  }

  /** Free the ORT session and file handles (after the running request, if any). */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    // running generations finish first (as queued ones do without batching)
    await this.scheduler?.idle();
    const release = await this.queue.acquire();
    try {
      await this.session.dispose();
      this.model.weights.close();
    } finally {
      release();
    }
  }

  private checkOpen(): void {
    if (this.disposed) throw new InvalidArgumentError("the engine has been disposed", { field: "engine" });
  }
}
