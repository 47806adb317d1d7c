/** `onepass serve`: the OpenAI-compatible server (a thin layer over startServer). Every flag is also an env var. */
import type { Command } from "../command.js";
import { engineFlags, numberFlag, parseFlags } from "../args.js";
import { stageProgress } from "../progress.js";
import { startServer } from "../../serve/server.js";
import { parseProbeSpec } from "../../serve/probes.js";

const USAGE = `usage: onepass serve [options]

Serves a model over an OpenAI-compatible HTTP API (chat, completions, moderations, classify, models, health,
ready, metrics) with a playground at /. Every probe's verdict travels with each generation, computed from the
same prefill; a blocking probe refuses the request before any token is decoded. With no arguments: the
built-in stories260K model with the built-in sentiment and safety probes. Each flag can also be set by the
environment variable in brackets (the flag wins). SIGTERM/SIGINT: stop accepting, finish or cancel what runs
within the grace period, exit 0.

options:
  --model PATH          .gguf file, Hugging Face folder or ONNX folder [ONEPASS_MODEL] (default: built-in)
  --probe SPEC          a probe folder with an optional policy, repeatable [ONEPASS_PROBES, separated by spaces or ;]:
                          DIR                      annotate (classify and report)
                          DIR:annotate=LABEL,...   annotate and mark these labels as flagged
                          DIR:block=LABEL,...      refuse the request before decoding when the label is one of these
                          NAME=DIR[:POLICY]        report the probe under NAME (default: the folder's name)
                        (default with no --model: the built-in probes; --no-probes for none)
  --no-probes           serve without probes [ONEPASS_NO_PROBES=1]
  --response-probe SPEC a response probe (train --target response) that reads the answer token by token as it
                        is generated, repeatable [ONEPASS_RESPONSE_PROBES, separated by spaces or ;]; SPEC as for
                        --probe: DIR[:annotate] reports its readings (response_classifications), DIR:block=LABEL,...
                        stops the answer at the first token it labels LABEL (finish_reason "content_filter").
                        A request picks some with onepass: { response_probes: [...] } (default: all)
  --host HOST           [ONEPASS_HOST] (default 127.0.0.1)
  --port N              [ONEPASS_PORT] (default 8080; 0 = any free port)
  --api-key KEY         require Authorization: Bearer KEY on /v1/* [ONEPASS_API_KEY]
  --model-name NAME     the model id clients use [ONEPASS_MODEL_NAME] (default: the model file's name)
  --max-queue N         requests waiting for the engine before 429 [ONEPASS_MAX_QUEUE] (default 16)
  --timeout-ms N        per-request limit, queue included [ONEPASS_TIMEOUT_MS] (default 120000)
  --max-body-bytes N    [ONEPASS_MAX_BODY_BYTES] (default 1048576)
  --max-prompt-tokens N [ONEPASS_MAX_PROMPT_TOKENS] (default: the context window)
  --max-tokens N        largest max_tokens a request may ask for [ONEPASS_MAX_TOKENS] (default: the context window)
  --grace-ms N          shutdown grace period [ONEPASS_GRACE_MS] (default 10000)
  --threads N           ONNX Runtime threads [ONEPASS_THREADS]
  --device D            cpu (default) | cuda | auto [ONEPASS_DEVICE]
  --cache-dir DIR       where built decoder graphs are cached [ONEPASS_CACHE_DIR]
  -h, --help            this text
`;

const OPTIONS = {
  model: { type: "string" },
  probe: { type: "string", multiple: true },
  "no-probes": { type: "boolean" },
  "response-probe": { type: "string", multiple: true },
  host: { type: "string" },
  port: { type: "string" },
  "api-key": { type: "string" },
  "model-name": { type: "string" },
  "max-queue": { type: "string" },
  "timeout-ms": { type: "string" },
  "max-body-bytes": { type: "string" },
  "max-prompt-tokens": { type: "string" },
  "max-tokens": { type: "string" },
  "grace-ms": { type: "string" },
  threads: { type: "string" },
  device: { type: "string" },
  "cache-dir": { type: "string" },
} as const;

/** The flag, else the environment variable ONEPASS_<FLAG> ("" counts as unset). */
function env(name: string): string | undefined {
  const v = process.env[`ONEPASS_${name.toUpperCase().replace(/-/g, "_")}`];
  return v === undefined || v === "" ? undefined : v;
}

export const serveCommand: Command = {
  name: "serve",
  summary: "serve an OpenAI-compatible API with probes on every request, and a playground at /",
  usage: USAGE,
  async run(argv: string[]): Promise<number> {
    const v = parseFlags(argv, OPTIONS, USAGE);
    const s = (flag: keyof typeof OPTIONS): string | undefined => (v[flag] as string | undefined) ?? env(flag);
    const n = (flag: keyof typeof OPTIONS, min = 0, max?: number): number | undefined => numberFlag(flag, s(flag), { int: true, min, max });
    const model = s("model");
    const noProbes = v["no-probes"] === true || env("no-probes") === "1";
    // ONEPASS_PROBES: specs separated by spaces or semicolons (commas belong to a policy's label list)
    const probeArgs = v.probe ?? env("probes")?.split(/[\s;]+/).filter((p) => p.length > 0);
    const probes = noProbes ? [] : probeArgs?.map((p) => parseProbeSpec(p));
    const responseArgs = v["response-probe"] ?? env("response-probes")?.split(/[\s;]+/).filter((p) => p.length > 0);
    const responseProbes = responseArgs?.map((p) => parseProbeSpec(p, "--response-probe"));
    const engineOpts = engineFlags({ threads: s("threads"), device: s("device") });

    const server = await startServer({
      model,
      probes,
      responseProbes,
      engineOptions: { ...engineOpts, cacheDir: s("cache-dir"), onProgress: stageProgress() },
      host: s("host"),
      port: n("port", 0, 65535),
      apiKey: s("api-key"),
      modelName: s("model-name"),
      maxQueue: n("max-queue"),
      requestTimeoutMs: n("timeout-ms", 1),
      maxBodyBytes: n("max-body-bytes", 1),
      maxPromptTokens: n("max-prompt-tokens", 1),
      maxTokens: n("max-tokens", 1),
      shutdownGraceMs: n("grace-ms"),
    });
    const lines = [`onepass serving ${server.modelName} at ${server.url}  (playground: ${server.url}/, API: ${server.url}/v1)`];
    if (server.probes.length === 0) lines.push("probes: none");
    for (const p of server.probes) {
      lines.push(`probe ${p.name}: ${p.loaded.meta.config.kind}, labels ${p.loaded.meta.labelNames.join("/")}, ${p.policy}${p.flags.size > 0 ? ` ${[...p.flags].join(",")}` : ""} (${p.loaded.dir})`);
    }
    for (const p of server.responseProbes) {
      lines.push(`response probe ${p.name}: ${p.loaded.meta.config.kind}, labels ${p.loaded.meta.labelNames.join("/")}, ${p.policy}${p.flags.size > 0 ? ` ${[...p.flags].join(",")}` : ""} (${p.loaded.dir})`);
      if (p.loaded.meta.tokenization?.target !== "response") lines.push(`  warning: ${p.name} was not trained on response tokens (train --target response); its readings of the answer are unreliable`);
    }
    if (s("api-key") !== undefined) lines.push("API key required (Authorization: Bearer ...)");
    process.stdout.write(lines.join("\n") + "\n");

    await new Promise<void>((resolve) => {
      const stop = (signal: string): void => {
        process.stderr.write(`${signal}: finishing running requests (grace ${n("grace-ms") ?? 10000} ms), then exiting\n`);
        process.removeListener("SIGTERM", onTerm);
        process.removeListener("SIGINT", onInt);
        server.close().then(resolve, (err) => {
          process.stderr.write(`onepass serve: ${(err as Error).message}\n`);
          resolve();
        });
      };
      const onTerm = (): void => stop("SIGTERM");
      const onInt = (): void => stop("SIGINT");
      process.once("SIGTERM", onTerm);
      process.once("SIGINT", onInt);
    });
    return 0;
  },
};
