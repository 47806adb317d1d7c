/**
 * The OpenAI-compatible server over one Engine: every generation carries every probe's verdict, computed from
 * the hidden states of the prefill that also produces the first token (no second pass), and a blocking probe
 * refuses a request before any decode step.
 *
 *   const server = await startServer({ port: 8080 });   // built-in stories260K + built-in probes
 *   console.log(server.url);                            // http://127.0.0.1:8080
 *   await server.close();                               // stop accepting, finish or cancel, free the engine
 */
import { randomUUID, createHash, timingSafeEqual } from "node:crypto";
import { basename } from "node:path";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { Engine, type EngineOptions, type GenerateRequest } from "../engine/engine.js";
import { InvalidArgumentError } from "../errors.js";
import type { GenerateResult, Generation } from "../engine/generate.js";
import type { ForwardPass } from "../engine/types.js";
import type { LoadedProbe } from "../probe/artifact.js";
import { generateWithProbes, probeHook, type Classification, type ProbePolicy, type ResponseReading } from "../probe/live.js";
import { responseTracker } from "../probe/response.js";
import { renderPlayground } from "../pages/playground.js";
import { Admission } from "./admission.js";
import {
  AuthenticationError,
  BadRequestError,
  ContextLengthError,
  MethodNotAllowedError,
  ModelNotFoundError,
  RequestTimeoutError,
  RouteNotFoundError,
  ShuttingDownError,
  errorBody,
  toServeError,
} from "./errors.js";
import { ServeMetrics } from "./metrics.js";
import { builtinProbeSpecs, loadServedProbes, toProbeResult, toResponseResult, type ProbeSpec, type ServedProbe } from "./probes.js";
import type {
  ChatResponse,
  Classifications,
  ClassifyResponse,
  CompletionResponse,
  ModelList,
  ModerationResponse,
  OnepassRequestOptions,
  ResponseClassifications,
  Timings,
} from "./protocol.js";
import {
  expectBody,
  optBool,
  optNumber,
  optStop,
  optString,
  parseInputs,
  parseMessages,
  parseOnepass,
  probeNames,
  refuseUnsupported,
  type Body,
} from "./validate.js";

export interface ServeOptions {
  /** Serve this engine (loaded with taps when probes are used); it is not disposed on close. */
  engine?: Engine;
  /** Model path (default: the built-in stories260K). Ignored when `engine` is given. */
  model?: string;
  /** Engine options when the server loads the model (threads, device, cacheDir). */
  engineOptions?: EngineOptions;
  /** Probe folders with their policies (see parseProbeSpec). Default: the built-in probes when `model` is not set. */
  probes?: ProbeSpec[];
  /**
   * Response probes (trained with `train --target response`) that read the answer token by token as it is
   * generated: `annotate` reports their readings, `block=LABELS` stops the answer at the first token they give
   * one of LABELS (finish_reason "content_filter"). Default: none.
   */
  responseProbes?: ProbeSpec[];
  /** The model id clients send and see (default: the model file's name without extension). */
  modelName?: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
  /** When set, /v1/* needs `Authorization: Bearer <key>`. */
  apiKey?: string;
  /** Requests running at once on the engine (default 1). */
  concurrency?: number;
  /** Requests that may wait for the engine; beyond it, 429 (default 16). */
  maxQueue?: number;
  /** Whole-request limit, queue wait included (default 120000 ms). */
  requestTimeoutMs?: number;
  /** Largest request body (default 1 MiB). */
  maxBodyBytes?: number;
  /** Largest prompt in tokens (default: the model's context window). */
  maxPromptTokens?: number;
  /** Largest max_tokens (default: the context window). */
  maxTokens?: number;
  /** Most texts in one /v1/moderations or /v1/classify request (default 64). */
  maxInputs?: number;
  /** On close: how long running requests may finish before they are cancelled (default 10000 ms). */
  shutdownGraceMs?: number;
  /** The answer of a blocked request. */
  refusal?: string;
}

export interface OnepassServer {
  readonly app: FastifyInstance;
  readonly engine: Engine;
  readonly probes: readonly ServedProbe[];
  /** Response probes: they moderate the answer as it streams. */
  readonly responseProbes: readonly ServedProbe[];
  readonly metrics: ServeMetrics;
  readonly modelName: string;
  /** http://host:port once listening. */
  readonly url: string;
  listen(): Promise<string>;
  /** Stop accepting, let running requests finish for `graceMs`, cancel the rest, free the engine (if the server loaded it). */
  close(graceMs?: number): Promise<void>;
}

const DEFAULT_REFUSAL = "I can't help with that request.";

/** Checked generation settings shared by chat and completions. */
interface Sampling {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  stop?: string[];
  stream: boolean;
  includeUsage: boolean;
}

/** What a generation produced, plus the probe results and timings the API reports. */
interface Outcome {
  result: GenerateResult;
  classifications?: Classifications;
  /** Response probes: each one's last reading. */
  responseClassifications?: ResponseClassifications;
  blockedBy: string[];
  timings: Timings;
}

/** The probes one request runs: prompt probes on its prefill, response probes on its answer. */
interface Selection {
  probes: ServedProbe[];
  responseProbes: ServedProbe[];
  layerWeights: boolean;
}

/** What a generation reports as it goes (stream chunks). */
interface GenerationEvents {
  /** Every prompt probe's verdict, after prefill and before the first decode step. */
  onClassified(c: Classifications): void;
  /** Response probes whose label changed (or that read their first token), before that token's text. */
  onResponse(changed: ResponseClassifications): void;
  onText(text: string): void;
}

const NO_EVENTS: GenerationEvents = { onClassified: () => {}, onResponse: () => {}, onText: () => {} };

/** Per-request context: the abort signal (client gone or timeout) and the clock. */
interface RequestCtx {
  start: number;
  abort: AbortController;
  timedOut: boolean;
  timer?: NodeJS.Timeout;
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/** The JSON body parser: bytes must be UTF-8 (no silent U+FFFD) and the text JSON. */
function parseJsonBody(_req: FastifyRequest, body: Buffer, done: (err: Error | null, body?: unknown) => void): void {
  if (body.length === 0) return done(null, undefined);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch {
    let offset = 0;
    // the first byte where the body stops being UTF-8, for the message
    for (let n = 1; n <= body.length; n++) {
      try {
        new TextDecoder("utf-8", { fatal: true }).decode(body.subarray(0, n), { stream: true });
        offset = n;
      } catch {
        break;
      }
      if (n > 1 << 16) break;
    }
    return done(new BadRequestError(`the request body is not valid UTF-8 (at byte ${offset})`, undefined, "invalid_encoding"));
  }
  try {
    done(null, JSON.parse(text));
  } catch (err) {
    done(new BadRequestError(`the request body is not valid JSON: ${(err as Error).message}`, undefined, "invalid_json"));
  }
}

export async function createServer(options: ServeOptions = {}): Promise<OnepassServer> {
  const specs = options.probes ?? (options.model === undefined && options.engine === undefined ? builtinProbeSpecs() : []);
  const responseSpecs = options.responseProbes ?? [];
  const ownsEngine = options.engine === undefined;
  const taps = specs.length + responseSpecs.length > 0;
  const engine = options.engine ?? (await Engine.load(options.model, { ...options.engineOptions, ...(taps ? { taps: true } : {}) }));
  let probes: ServedProbe[];
  let responseProbes: ServedProbe[];
  try {
    probes = loadServedProbes(specs, engine.fingerprint);
    responseProbes = loadServedProbes(responseSpecs, engine.fingerprint, "--response-probe");
    if (probes.length + responseProbes.length > 0 && !engine.hasTaps) throw new BadRequestError("probes need an engine loaded with taps: true", "probes");
  } catch (err) {
    if (ownsEngine) await engine.dispose();
    throw err;
  }
  // one prefill through every probe before the first client: ORT creates the probes' kernel sessions lazily,
  // and the first request would otherwise pay for it (≈150 ms on the built-in model)
  if (probes.length > 0) {
    const record: Record<string, LoadedProbe> = Object.fromEntries(probes.map((p) => [p.name, p.loaded]));
    const tokens = engine.promptTokens({ prompt: "Hello", chat: true });
    const hook = probeHook(record, { fingerprint: engine.fingerprint, summaries: engine.hasTapSummaries });
    await hook.onPrefill(await engine.forward(tokens, hook.forwardOptions), { promptTokens: tokens });
  }
  // the same for response probes that run compiled (MHA re-runs): one token of zeros [L+1, d]
  for (const p of responseProbes) {
    const { layers, dim } = p.loaded.probe.shape;
    await responseTracker(p.loaded.probe).push(new Float32Array(layers * dim));
  }
  return new Server(engine, ownsEngine, probes, responseProbes, options);
}

/** A probe as the playground lists it. */
function describeProbe(p: ServedProbe) {
  return { name: p.name, labels: p.loaded.meta.labelNames, policy: p.policy, flags: [...p.flags], kind: p.loaded.meta.config.kind };
}

/** createServer + listen. */
export async function startServer(options: ServeOptions = {}): Promise<OnepassServer> {
  const server = await createServer(options);
  try {
    await server.listen();
  } catch (err) {
    await server.close(0);
    throw err;
  }
  return server;
}

class Server implements OnepassServer {
  readonly app: FastifyInstance;
  readonly metrics = new ServeMetrics();
  readonly modelName: string;
  url = "";
  private readonly admission: Admission;
  private readonly running = new Set<RequestCtx>();
  private draining = false;
  private closed = false;
  private readonly keyDigest?: Buffer;
  private readonly o: Required<Omit<ServeOptions, "engine" | "model" | "engineOptions" | "probes" | "responseProbes" | "apiKey" | "modelName">>;

  constructor(
    readonly engine: Engine,
    private readonly ownsEngine: boolean,
    readonly probes: readonly ServedProbe[],
    readonly responseProbes: readonly ServedProbe[],
    options: ServeOptions,
  ) {
    const ctx = engine.contextLength;
    this.o = {
      host: options.host ?? "127.0.0.1",
      port: options.port ?? 8080,
      concurrency: options.concurrency ?? 1,
      maxQueue: options.maxQueue ?? 16,
      requestTimeoutMs: options.requestTimeoutMs ?? 120_000,
      maxBodyBytes: options.maxBodyBytes ?? 1 << 20,
      maxPromptTokens: Math.min(options.maxPromptTokens ?? ctx, ctx),
      maxTokens: Math.min(options.maxTokens ?? ctx, ctx),
      maxInputs: options.maxInputs ?? 64,
      shutdownGraceMs: options.shutdownGraceMs ?? 10_000,
      refusal: options.refusal ?? DEFAULT_REFUSAL,
    };
    for (const [k, v] of Object.entries({ concurrency: this.o.concurrency, maxQueue: this.o.maxQueue, requestTimeoutMs: this.o.requestTimeoutMs, maxBodyBytes: this.o.maxBodyBytes })) {
      if (!Number.isInteger(v) || v < (k === "maxQueue" ? 0 : 1)) throw new BadRequestError(`${k} must be a positive integer, got ${v}`, k);
    }
    this.modelName = options.modelName ?? basename(engine.path).replace(/\.gguf$/i, "");
    if (options.apiKey !== undefined && options.apiKey.length > 0) this.keyDigest = digest(options.apiKey);
    this.admission = new Admission(this.o.concurrency, this.o.maxQueue, (running, waiting) => {
      this.metrics.active.set(running);
      this.metrics.queueDepth.set(waiting);
    });
    this.app = this.buildApp();
  }

  async listen(): Promise<string> {
    if (!Number.isInteger(this.o.port) || this.o.port < 0 || this.o.port > 65535) {
      throw new InvalidArgumentError(`port must be an integer from 0 to 65535, got ${this.o.port}`, { field: "port" });
    }
    let address: string;
    try {
      address = await this.app.listen({ host: this.o.host, port: this.o.port });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // the usual reasons (port taken, no permission, unknown host) as one line naming the address
      throw new InvalidArgumentError(`cannot listen on ${this.o.host}:${this.o.port}: ${code ?? (err as Error).message}`, { field: "port" }, { cause: err });
    }
    const u = new URL(address);
    // fastify reports the first address it bound; print the host that was asked for
    this.url = `http://${this.o.host.includes(":") ? `[${this.o.host}]` : this.o.host}:${u.port}`;
    return this.url;
  }

  async close(graceMs = this.o.shutdownGraceMs): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.draining = true;
    this.admission.close();
    const deadline = Date.now() + graceMs;
    while (this.running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const ctx of this.running) ctx.abort.abort(new ShuttingDownError("the server is shutting down"));
    while (this.running.size > 0) await new Promise((r) => setTimeout(r, 5));
    await this.app.close();
    if (this.ownsEngine) await this.engine.dispose();
  }

  // ---------------------------------------------------------------------------------------------- routes

  private buildApp(): FastifyInstance {
    const app = Fastify({ bodyLimit: this.o.maxBodyBytes, logger: false, forceCloseConnections: true, return503OnClosing: true });
    // every route's path pattern and methods, so that a known path with the wrong method is a 405, not a 404
    const routes: Array<{ pattern: RegExp; methods: Set<string> }> = [];
    app.addHook("onRoute", (r) => {
      const pattern = new RegExp(`^${r.url.split("/").map((seg) => (seg.startsWith(":") ? "[^/]+" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))).join("/")}$`);
      let entry = routes.find((e) => e.pattern.source === pattern.source);
      if (entry === undefined) routes.push((entry = { pattern, methods: new Set() }));
      for (const m of Array.isArray(r.method) ? r.method : [r.method]) entry.methods.add(m);
    });
    app.removeAllContentTypeParsers();
    // JSON whatever the content type says (curl -d sends form encoding): the parser refuses anything else
    app.addContentTypeParser("*", { parseAs: "buffer", bodyLimit: this.o.maxBodyBytes }, parseJsonBody);

    app.addHook("onRequest", async (req) => {
      if (!req.url.startsWith("/v1/")) return;
      if (this.draining) throw new ShuttingDownError("the server is shutting down");
      if (this.keyDigest !== undefined) {
        const h = req.headers.authorization;
        const m = typeof h === "string" ? /^Bearer\s+(.+)$/i.exec(h.trim()) : null;
        if (m === null) throw new AuthenticationError("missing API key: send Authorization: Bearer <key>", "authorization");
        // compare digests: equal length, constant time, nothing learnt from the key's length
        if (!timingSafeEqual(digest(m[1]), this.keyDigest)) throw new AuthenticationError("invalid API key", "authorization");
      }
    });
    app.addHook("onResponse", async (req, reply) => {
      this.metrics.requests.inc({ route: req.routeOptions.url ?? "unmatched", method: req.method, status: String(reply.statusCode) });
    });
    app.setErrorHandler((err, _req, reply) => {
      const e = toServeError(err);
      if (e.status === 429) {
        this.metrics.rejected.inc({ reason: "queue_full" });
        reply.header("retry-after", String((e as { retryAfterS?: number }).retryAfterS ?? 1));
      }
      void reply.code(e.status).send(errorBody(e));
    });
    app.setNotFoundHandler((req, reply) => {
      const path = req.url.split("?")[0];
      const allowed = new Set(routes.filter((r) => r.pattern.test(path)).flatMap((r) => [...r.methods]));
      if (allowed.has("GET")) allowed.add("HEAD");
      if (allowed.size > 0) {
        const allow = [...allowed].sort().join(", ");
        const e = new MethodNotAllowedError(`${req.method} is not allowed on ${path.slice(0, 200)} (allowed: ${allow})`);
        void reply.code(405).header("allow", allow).send(errorBody(e));
        return;
      }
      const e = new RouteNotFoundError(`no route ${req.method} ${req.url.split("?")[0].slice(0, 200)}`);
      void reply.code(404).send(errorBody(e));
    });

    app.get("/", async (_req, reply) => {
      reply.type("text/html; charset=utf-8");
      return renderPlayground({
        model: this.modelName,
        needsKey: this.keyDigest !== undefined,
        probes: this.probes.map(describeProbe),
        responseProbes: this.responseProbes.map(describeProbe),
      });
    });
    app.get("/health", async () => ({ status: "ok" }));
    app.get("/ready", async (_req, reply) => {
      if (this.draining) return reply.code(503).send({ ready: false, reason: "shutting down" });
      return {
        ready: true, model: this.modelName, probes: this.probes.map((p) => p.name), response_probes: this.responseProbes.map((p) => p.name),
        queue: this.admission.depth, running: this.admission.active,
      };
    });
    app.get("/metrics", async (_req, reply) => {
      reply.type(this.metrics.registry.contentType);
      return this.metrics.registry.metrics();
    });
    app.get("/v1/models", async (): Promise<ModelList> => ({ object: "list", data: [this.modelObject()] }));
    app.get("/v1/models/:id", async (req) => {
      const { id } = req.params as { id: string };
      if (id !== this.modelName) throw new ModelNotFoundError(`model '${id.slice(0, 100)}' is not served here (serving '${this.modelName}')`, "model");
      return this.modelObject();
    });
    app.post("/v1/chat/completions", (req, reply) => this.chat(req, reply));
    app.post("/v1/completions", (req, reply) => this.completion(req, reply));
    app.post("/v1/moderations", (req, reply) => this.moderations(req, reply));
    app.post("/v1/classify", (req, reply) => this.classify(req, reply));
    return app;
  }

  private modelObject() {
    return { id: this.modelName, object: "model" as const, created: 0, owned_by: "onepass" };
  }

  private checkModel(b: Body): void {
    const model = optString(b, "model");
    if (model !== undefined && model !== this.modelName) {
      throw new ModelNotFoundError(`model '${model.slice(0, 100)}' is not served here (serving '${this.modelName}')`, "model");
    }
  }

  private sampling(b: Body): Sampling {
    refuseUnsupported(b);
    const maxTokens = optNumber(b, "max_completion_tokens", { int: true, min: 1, max: this.o.maxTokens }) ?? optNumber(b, "max_tokens", { int: true, min: 1, max: this.o.maxTokens });
    const stream = optBool(b, "stream") ?? false;
    let includeUsage = false;
    const so = b.stream_options;
    if (so !== undefined && so !== null) {
      if (typeof so !== "object" || Array.isArray(so)) throw new BadRequestError("stream_options must be an object", "stream_options", "invalid_type");
      if (!stream) throw new BadRequestError("stream_options needs stream: true", "stream_options");
      includeUsage = optBool(so as Body, "include_usage", "stream_options.include_usage") ?? false;
    }
    optString(b, "user");
    return {
      maxTokens,
      temperature: optNumber(b, "temperature", { min: 0, max: 2 }),
      topP: optNumber(b, "top_p", { min: 0, max: 1, minExclusive: true }),
      seed: optNumber(b, "seed", { int: true }),
      stop: optStop(b),
      stream,
      includeUsage,
    };
  }

  private selectProbes(names: string[] | undefined): ServedProbe[] {
    return names === undefined ? [...this.probes] : this.probes.filter((p) => names.includes(p.name));
  }

  /** A generation request's probes: every loaded one unless `onepass.probes` / `onepass.response_probes` name some. */
  private selection(op: OnepassRequestOptions): Selection {
    const names = op.response_probes;
    return {
      probes: this.selectProbes(op.probes),
      responseProbes: names === undefined ? [...this.responseProbes] : this.responseProbes.filter((p) => names.includes(p.name)),
      layerWeights: op.layer_weights ?? false,
    };
  }

  /** Prompt tokens of a request, checked against the limits (before it queues). */
  private promptTokens(req: Pick<GenerateRequest, "prompt" | "messages" | "chat">, sampling: Sampling | undefined, param: string): number[] {
    let tokens: number[];
    try {
      tokens = this.engine.promptTokens(req);
    } catch (err) {
      throw toServeError(err);
    }
    if (tokens.length > this.o.maxPromptTokens) {
      throw new ContextLengthError(`the prompt has ${tokens.length} tokens; this server takes at most ${this.o.maxPromptTokens}`, param);
    }
    const ctx = this.engine.contextLength;
    if (sampling !== undefined) {
      const room = ctx - tokens.length;
      if (room < 1) throw new ContextLengthError(`the prompt has ${tokens.length} tokens and leaves no room to generate in the context window of ${ctx}`, param);
      if (sampling.maxTokens !== undefined && sampling.maxTokens > room) {
        throw new ContextLengthError(`the prompt (${tokens.length} tokens) + max_tokens (${sampling.maxTokens}) exceeds the context window of ${ctx}`, "max_tokens");
      }
    }
    return tokens;
  }

  private newCtx(reply: FastifyReply): RequestCtx {
    const ctx: RequestCtx = { start: performance.now(), abort: new AbortController(), timedOut: false };
    ctx.timer = setTimeout(() => {
      ctx.timedOut = true;
      ctx.abort.abort(new RequestTimeoutError(`the request took longer than the server's limit of ${this.o.requestTimeoutMs} ms`));
    }, this.o.requestTimeoutMs);
    // the client went away before the answer was complete: cancel at the next step
    reply.raw.once("close", () => {
      if (!reply.raw.writableFinished) ctx.abort.abort(new Error("client disconnected"));
    });
    return ctx;
  }

  private endCtx(ctx: RequestCtx): void {
    clearTimeout(ctx.timer);
    this.running.delete(ctx);
  }

  /** Wait for the engine (429 when the queue is full); the caller releases. */
  private async admit(ctx: RequestCtx): Promise<() => void> {
    try {
      const release = await this.admission.acquire(ctx.abort.signal);
      this.running.add(ctx);
      return release;
    } catch (err) {
      clearTimeout(ctx.timer);
      throw ctx.timedOut ? new RequestTimeoutError(`the request waited longer than the server's limit of ${this.o.requestTimeoutMs} ms`) : err;
    }
  }

  /**
   * Run one generation with the selected probes; `events.onClassified` is called inside the probe hook, after
   * prefill and before the first decode step; `events.onResponse` when a response probe's label changes, before
   * the text of the token that changed it; `events.onText` with each piece of text.
   */
  private async generate(ctx: RequestCtx, request: GenerateRequest, sel: Selection, events: GenerationEvents): Promise<Outcome> {
    const queuedMs = performance.now() - ctx.start;
    const { probes: selected, responseProbes, layerWeights } = sel;
    let classifications: Classifications | undefined;
    let classificationsMs: number | null = null;
    let probeMs = 0;
    const blockedBy: string[] = [];
    let generation: Generation;
    const req: GenerateRequest = { ...request, signal: ctx.abort.signal };
    const onClassified = (cs: Classification[]): void => {
      classifications = {};
      for (const c of cs) {
        const probe = selected.find((p) => p.name === c.probe)!;
        classifications[c.probe] = toProbeResult(c, probe, layerWeights);
        probeMs += c.probeMs;
        this.metrics.probeSeconds.observe({ probe: c.probe }, c.probeMs / 1000);
        this.metrics.decisions.inc({ probe: c.probe, label: c.label });
        if (c.blocks) {
          blockedBy.push(c.probe);
          this.metrics.blocked.inc({ probe: c.probe });
        }
      }
      classificationsMs = performance.now() - ctx.start;
      events.onClassified(classifications);
    };
    // response probes: each one's last reading, its time so far and its label history
    const last = new Map<string, { reading: ResponseReading; probeMs: number; history: Array<{ tokens: number; label: string }> }>();
    let responseMs = 0;
    let responseWarnings: string[] = [];
    const responseResult = (name: string): ResponseClassifications[string] => {
      const st = last.get(name)!;
      const warnings = responseWarnings.filter((w) => w.startsWith(`${name}: `)).map((w) => w.slice(name.length + 2));
      return toResponseResult(st.reading, responseProbes.find((p) => p.name === name)!, { probeMs: st.probeMs, history: st.history, layerWeights, warnings });
    };
    const onReading = (r: ResponseReading): void => {
      responseMs += r.probeMs;
      this.metrics.responseProbeSeconds.observe({ probe: r.probe }, r.probeMs / 1000);
      let st = last.get(r.probe);
      const changed = st === undefined || st.reading.label !== r.label;
      if (st === undefined) last.set(r.probe, (st = { reading: r, probeMs: 0, history: [] }));
      st.reading = r;
      st.probeMs += r.probeMs;
      if (changed) {
        st.history.push({ tokens: r.tokens, label: r.label });
        events.onResponse({ [r.probe]: responseResult(r.probe) });
      }
    };
    if (selected.length + responseProbes.length > 0) {
      const record: Record<string, LoadedProbe> = Object.fromEntries(selected.map((p) => [p.name, p.loaded]));
      const block = selected.filter((p) => p.policy === "block").flatMap((p) => [...p.flags].map((l) => `${p.name}:${l}`));
      const policy: ProbePolicy = block.length > 0 ? { block } : "annotate";
      const responseBlock = responseProbes.filter((p) => p.policy === "block").flatMap((p) => [...p.flags].map((l) => `${p.name}:${l}`));
      const probed = generateWithProbes(this.engine, req, record, {
        policy,
        onClassified,
        ...(responseProbes.length > 0
          ? {
              response: {
                probes: Object.fromEntries(responseProbes.map((p) => [p.name, p.loaded])),
                policy: responseBlock.length > 0 ? { block: responseBlock } : "annotate",
                onReading,
              },
            }
          : {}),
      });
      generation = probed.generation;
      responseWarnings = probed.responseWarnings ?? [];
    } else {
      generation = this.engine.generate(req);
    }
    const onText = events.onText;
    for await (const chunk of generation) if (chunk.text.length > 0) onText(chunk.text);
    const result = await generation.result;
    let responseClassifications: ResponseClassifications | undefined;
    if (responseProbes.length > 0) {
      responseClassifications = {};
      for (const p of responseProbes) {
        if (!last.has(p.name)) continue; // no token was generated (or the prompt was refused)
        const r = (responseClassifications[p.name] = responseResult(p.name));
        this.metrics.responseDecisions.inc({ probe: p.name, label: r.label });
        if (r.blocked) this.metrics.responseStopped.inc({ probe: p.name });
      }
    }
    if (result.finishReason === "abort" && ctx.timedOut) {
      throw new RequestTimeoutError(`the request took longer than the server's limit of ${this.o.requestTimeoutMs} ms (${result.tokens.length} tokens generated)`);
    }
    const t = result.timings;
    this.metrics.prefillSeconds.observe(t.prefillMs / 1000);
    if (result.usage.completionTokens > 0) this.metrics.decodeSeconds.observe(t.decodeMs / 1000);
    this.metrics.promptTokens.inc(result.usage.promptTokens);
    this.metrics.completionTokens.inc(result.usage.completionTokens);
    const timings: Timings = {
      queue_ms: queuedMs,
      prefill_ms: t.prefillMs,
      probe_ms: probeMs,
      decode_ms: t.decodeMs,
      total_ms: performance.now() - ctx.start,
      classifications_ms: classificationsMs,
      decode_tokens_per_s: t.decodeTokensPerS,
      response_probe_ms: responseMs,
    };
    return { result, classifications, ...(responseClassifications !== undefined ? { responseClassifications } : {}), blockedBy, timings };
  }

  private finishReason(r: GenerateResult): "stop" | "length" | "content_filter" {
    // "blocked": a prompt probe refused it; "content_filter": a response probe stopped the answer
    if (r.finishReason === "blocked" || r.finishReason === "content_filter") return "content_filter";
    if (r.finishReason === "length") return "length";
    return "stop";
  }

  private usage(r: GenerateResult) {
    return { prompt_tokens: r.usage.promptTokens, completion_tokens: r.usage.completionTokens, total_tokens: r.usage.promptTokens + r.usage.completionTokens };
  }

  // -------------------------------------------------------------------------------- chat and completions

  private async chat(req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const b = expectBody(req.body);
    this.checkModel(b);
    const messages = parseMessages(b);
    const s = this.sampling(b);
    const op = parseOnepass(b, this.probes.map((p) => p.name), this.responseProbes.map((p) => p.name));
    const request: GenerateRequest = { messages, maxTokens: s.maxTokens, temperature: s.temperature, topP: s.topP, seed: s.seed, stop: s.stop };
    const prompt = this.promptTokens(request, s, "messages");
    if (request.maxTokens === undefined) request.maxTokens = Math.min(256, this.o.maxTokens, this.engine.contextLength - prompt.length);
    return this.serveGeneration(req, reply, "chat", request, s, this.selection(op));
  }

  private async completion(req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const b = expectBody(req.body);
    this.checkModel(b);
    let prompt: string | number[];
    const p = b.prompt;
    if (typeof p === "string") prompt = p;
    else if (Array.isArray(p) && p.length === 1 && typeof p[0] === "string") prompt = p[0];
    else if (Array.isArray(p) && p.length > 0 && p.every((t) => Number.isInteger(t))) prompt = p as number[];
    else if (p === undefined || p === null) throw new BadRequestError("prompt is required", "prompt", "missing_required_parameter");
    else throw new BadRequestError("prompt must be a string, an array of one string, or an array of token ids (one prompt per request)", "prompt", "invalid_type");
    const s = this.sampling(b);
    const op = parseOnepass(b, this.probes.map((x) => x.name), this.responseProbes.map((x) => x.name));
    const request: GenerateRequest = { prompt, maxTokens: s.maxTokens ?? 16, temperature: s.temperature, topP: s.topP, seed: s.seed, stop: s.stop };
    const tokens = this.promptTokens(request, { ...s, maxTokens: request.maxTokens }, "prompt");
    request.maxTokens = Math.min(request.maxTokens!, this.engine.contextLength - tokens.length);
    return this.serveGeneration(req, reply, "completion", request, s, this.selection(op));
  }

  private async serveGeneration(
    req: FastifyRequest,
    reply: FastifyReply,
    kind: "chat" | "completion",
    request: GenerateRequest,
    s: Sampling,
    sel: Selection,
  ): Promise<unknown> {
    const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID().replace(/-/g, "")}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.modelName;
    const route = req.routeOptions.url ?? req.url;
    const ctx = this.newCtx(reply);
    const release = await this.admit(ctx);
    try {
      if (!s.stream) {
        const out = await this.generate(ctx, request, sel, NO_EVENTS);
        const r = out.result;
        const text = r.finishReason === "blocked" ? this.o.refusal : r.text;
        this.metrics.requestSeconds.observe({ route }, out.timings.total_ms / 1000);
        const ext = {
          ...(out.classifications !== undefined ? { classifications: out.classifications } : {}),
          ...(out.responseClassifications !== undefined ? { response_classifications: out.responseClassifications } : {}),
          timings: out.timings,
        };
        if (kind === "chat") {
          const body: ChatResponse = {
            id,
            object: "chat.completion",
            created,
            model,
            choices: [{ index: 0, message: { role: "assistant", content: text, refusal: r.finishReason === "blocked" ? text : null }, finish_reason: this.finishReason(r), logprobs: null }],
            usage: this.usage(r),
            ...ext,
          };
          return body;
        }
        const body: CompletionResponse = {
          id,
          object: "text_completion",
          created,
          model,
          choices: [{ index: 0, text, finish_reason: this.finishReason(r), logprobs: null }],
          usage: this.usage(r),
          ...ext,
        };
        return body;
      }
      return await this.stream(req, reply, ctx, kind, request, s, sel, { id, created, model, route });
    } finally {
      release();
      this.endCtx(ctx);
    }
  }

  /** Server-sent events: classifications chunk (right after prefill), text chunks, the finish chunk, usage, [DONE]. */
  private async stream(
    _req: FastifyRequest,
    reply: FastifyReply,
    ctx: RequestCtx,
    kind: "chat" | "completion",
    request: GenerateRequest,
    s: Sampling,
    sel: Selection,
    head: { id: string; created: number; model: string; route: string },
  ): Promise<void> {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" });
    const send = (obj: unknown): void => {
      if (!res.destroyed && !res.writableEnded) res.write(`data: ${JSON.stringify(obj)}\n\n`);
    };
    const base = kind === "chat" ? { id: head.id, object: "chat.completion.chunk" as const, created: head.created, model: head.model } : { id: head.id, object: "text_completion" as const, created: head.created, model: head.model };
    const chunk = (piece: string | null, finish: string | null, extra: Record<string, unknown> = {}, role = false) =>
      kind === "chat"
        ? { ...base, choices: [{ index: 0, delta: piece === null ? {} : { ...(role ? { role: "assistant" } : {}), content: piece }, finish_reason: finish, logprobs: null }], ...extra }
        : { ...base, choices: [{ index: 0, text: piece ?? "", finish_reason: finish, logprobs: null }], ...extra };
    let first = true;
    const sendFirst = (extra: Record<string, unknown>): void => {
      first = false;
      send(chunk("", null, extra, true));
    };
    try {
      const out = await this.generate(ctx, request, sel, {
        // the first chunk: every probe's verdict, before any token exists
        onClassified: (classifications) => sendFirst({ classifications }),
        // a response probe's label changed: its reading, before the text of the token that changed it
        onResponse: (changed) => {
          if (first) sendFirst({});
          send(chunk(null, null, { response_classifications: changed }));
        },
        onText: (text) => {
          if (first) sendFirst({});
          send(chunk(text, null));
        },
      });
      const r = out.result;
      if (first) sendFirst({});
      if (r.finishReason === "blocked") send(chunk(this.o.refusal, null));
      if (r.finishReason !== "abort") {
        // the last chunk: finish_reason ("content_filter" when a response probe stopped the answer) and every response probe's final reading
        const final = out.responseClassifications !== undefined ? { response_classifications: out.responseClassifications } : {};
        send(chunk(null, this.finishReason(r), { ...final, timings: out.timings }));
        if (s.includeUsage) send({ ...base, choices: [], usage: this.usage(r) });
        res.write("data: [DONE]\n\n");
      }
      this.metrics.requestSeconds.observe({ route: head.route }, out.timings.total_ms / 1000);
      this.metrics.requests.inc({ route: head.route, method: "POST", status: "200" });
    } catch (err) {
      const e = toServeError(err);
      send(errorBody(e));
      this.metrics.requests.inc({ route: head.route, method: "POST", status: String(e.status) });
    } finally {
      if (!res.writableEnded) res.end();
    }
  }

  // ------------------------------------------------------------------------------ classification only

  /** Prefill each text (no decoding) and run the probes on its hidden states. */
  private async classifyTexts(
    reply: FastifyReply,
    texts: string[],
    template: "chat" | "raw",
    selected: ServedProbe[],
    layerWeights: boolean,
  ): Promise<Array<{ tokens: number; classifications: Classifications; prefillMs: number }>> {
    if (selected.length === 0) throw new BadRequestError("no probes are loaded or selected: nothing to classify", "probes");
    const prompts = texts.map((t, i) => this.promptTokens({ prompt: t, chat: template === "chat" }, undefined, texts.length === 1 ? "input" : `input[${i}]`));
    const ctx = this.newCtx(reply);
    const release = await this.admit(ctx);
    try {
      const record: Record<string, LoadedProbe> = Object.fromEntries(selected.map((p) => [p.name, p.loaded]));
      const out = [];
      for (const tokens of prompts) {
        if (ctx.abort.signal.aborted) throw ctx.timedOut ? new RequestTimeoutError(`the request took longer than ${this.o.requestTimeoutMs} ms`) : new BadRequestError("cancelled");
        const hook = probeHook(record, {
          fingerprint: this.engine.fingerprint,
          tokenization: { template },
          bosTokenId: this.engine.tokenizer.bosTokenId,
          summaries: this.engine.hasTapSummaries,
        });
        const pass: ForwardPass = await this.engine.forward(tokens, hook.forwardOptions);
        this.metrics.prefillSeconds.observe(pass.runMs / 1000);
        this.metrics.promptTokens.inc(tokens.length);
        await hook.onPrefill(pass, { promptTokens: tokens });
        const cs = await hook.results;
        const classifications: Classifications = {};
        for (const c of cs) {
          classifications[c.probe] = toProbeResult(c, selected.find((p) => p.name === c.probe)!, layerWeights);
          this.metrics.probeSeconds.observe({ probe: c.probe }, c.probeMs / 1000);
          this.metrics.decisions.inc({ probe: c.probe, label: c.label });
        }
        out.push({ tokens: tokens.length, classifications, prefillMs: pass.runMs });
      }
      return out;
    } finally {
      release();
      this.endCtx(ctx);
    }
  }

  /** The template the probes were trained with ("chat" unless every selected probe was trained on raw text). */
  private probeTemplate(selected: ServedProbe[]): "chat" | "raw" {
    return selected.length > 0 && selected.every((p) => p.loaded.meta.tokenization?.template === "raw") ? "raw" : "chat";
  }

  private async moderations(req: FastifyRequest, reply: FastifyReply): Promise<ModerationResponse> {
    const b = expectBody(req.body);
    this.checkModel(b);
    const inputs = parseInputs(b, this.o.maxInputs);
    // response_probes is accepted (and checked) but has nothing to read here: no answer is generated
    const op = parseOnepass(b, this.probes.map((p) => p.name), this.responseProbes.map((p) => p.name));
    const selected = this.selectProbes(op.probes);
    const results = await this.classifyTexts(reply, inputs, this.probeTemplate(selected), selected, op.layer_weights ?? false);
    // categories are the probes' labels; a label two probes share is named probe:label
    const counts = new Map<string, number>();
    for (const p of selected) for (const l of p.loaded.meta.labelNames) counts.set(l, (counts.get(l) ?? 0) + 1);
    const key = (probe: string, label: string) => ((counts.get(label) ?? 0) > 1 ? `${probe}:${label}` : label);
    return {
      id: `modr-${randomUUID().replace(/-/g, "")}`,
      model: this.modelName,
      results: results.map((r) => {
        const categories: Record<string, boolean> = {};
        const scores: Record<string, number> = {};
        let flagged = false;
        for (const [probe, c] of Object.entries(r.classifications)) {
          for (const [label, p] of Object.entries(c.probabilities)) {
            categories[key(probe, label)] = c.label === label;
            scores[key(probe, label)] = p;
          }
          flagged ||= c.flagged;
        }
        return { flagged, categories, category_scores: scores, classifications: r.classifications };
      }),
    };
  }

  private async classify(req: FastifyRequest, reply: FastifyReply): Promise<ClassifyResponse> {
    const b = expectBody(req.body);
    this.checkModel(b);
    const inputs = parseInputs(b, this.o.maxInputs);
    const names = b.probes === undefined || b.probes === null ? undefined : probeNames(b.probes, this.probes.map((p) => p.name), "probes");
    const selected = this.selectProbes(names);
    const t = optString(b, "template");
    if (t !== undefined && t !== "chat" && t !== "raw") throw new BadRequestError(`template must be "chat" or "raw", got "${t.slice(0, 40)}"`, "template");
    const layerWeights = optBool(b, "layer_weights") ?? false;
    const results = await this.classifyTexts(reply, inputs, (t as "chat" | "raw" | undefined) ?? this.probeTemplate(selected), selected, layerWeights);
    return {
      object: "classification.list",
      model: this.modelName,
      data: results.map((r, index) => ({ index, prompt_tokens: r.tokens, classifications: r.classifications, prefill_ms: r.prefillMs })),
    };
  }
}

