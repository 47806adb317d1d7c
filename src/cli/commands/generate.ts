/** `onepass generate`: text on stdout as it is generated, timings on stderr. A thin layer over Engine. */
import type { Command } from "../command.js";
import { engineFlags, inFlagTerms, numberFlag, parseFlags, required, unescapeFlag } from "../args.js";
import { stageProgress } from "../progress.js";
import { InvalidArgumentError } from "../../errors.js";
import { Engine } from "../../engine/engine.js";
import type { GenerateResult } from "../../engine/generate.js";
import { basename, resolve } from "node:path";
import type { LoadedProbe } from "../../probe/artifact.js";
import { generateWithProbes, loadProbes, type Classification, type ResponseReading } from "../../probe/live.js";

const USAGE = `usage: onepass generate --prompt TEXT [options]

Generates a continuation of TEXT. Only the generated text goes to stdout (streamed as it comes);
timings go to stderr.

options:
  --model PATH         .gguf file, Hugging Face folder or ONNX folder (default: the built-in stories260K)
  --prompt TEXT        the prompt ("" = start from BOS)
  --max-tokens N       most tokens to generate (default 256, or what the context leaves)
  --temperature T      0 = greedy (default 1)
  --top-k K            sample among the K most likely tokens (default: no limit)
  --top-p P            nucleus sampling: the fewest tokens whose probability reaches P (default 1)
  --seed S             PRNG seed, for reproducible sampling
  --stop S             stop before this string (repeatable); \\n \\t \\r \\\\ \\xHH \\uHHHH are escapes,
                       so --stop "\\n\\n" stops at a blank line
  --chat               treat --prompt as a user message and apply the model's chat template
  --system TEXT        system message (implies --chat)
  --no-stream          print the text once, at the end
  --json               print one JSON object on stdout at the end instead of the text:
                       {text, finishReason, usage, timings, classifications}
  --probe DIR          classify the prompt with this probe (repeatable), from the hidden states of the
                       same prefill that generates: one line per probe on stderr (name, label, p, probe ms),
                       before the first generated token
  --block LABEL        with --probe: refuse the request when a probe's label is LABEL (or PROBE:LABEL;
                       repeatable): the classification and "blocked" go to stderr, nothing is generated
                       (finishReason "blocked"), and the exit code is still 0
  --response-probe DIR moderate the answer token by token with this response probe (repeatable; trained
                       with train --target response): each generated token's hidden states update it
  --block-response L   with --response-probe: stop generating as soon as a response probe says L (or
                       PROBE:L; repeatable): finishReason "content_filter", "stopped" and the reading on stderr
  --threads N          ONNX Runtime threads (default: all cores)
  --device D           cpu (default) | cuda | auto (CUDA when installed, else CPU with a notice)
  --cache-dir DIR      where built decoder graphs are cached
  -h, --help           this text
`;

const OPTIONS = {
  model: { type: "string" },
  prompt: { type: "string" },
  "max-tokens": { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  seed: { type: "string" },
  stop: { type: "string", multiple: true },
  chat: { type: "boolean" },
  system: { type: "string" },
  "no-stream": { type: "boolean" },
  json: { type: "boolean" },
  probe: { type: "string", multiple: true },
  block: { type: "string", multiple: true },
  "response-probe": { type: "string", multiple: true },
  "block-response": { type: "string", multiple: true },
  threads: { type: "string" },
  device: { type: "string" },
  "cache-dir": { type: "string" },
} as const;

function formatTimings(r: GenerateResult, totalMs: number): string {
  const t = r.timings;
  return (
    `prompt tokens: ${r.usage.promptTokens}, generated tokens: ${r.usage.completionTokens} (${r.finishReason})\n` +
    `prefill: ${t.prefillMs.toFixed(1)} ms, ${t.prefillTokensPerS.toFixed(1)} tok/s | ` +
    `decode: ${t.decodeMs.toFixed(1)} ms, ${t.decodeTokensPerS.toFixed(1)} tok/s | total: ${totalMs.toFixed(1)} ms\n`
  );
}

/** One stderr line per probe: name, label, P(label), probe ms (and any tokenisation warning). */
export function formatClassification(c: Classification): string {
  const p = c.probabilities[c.label];
  const warn = c.warnings.map((w) => `\n  warning (${c.probe}): ${w}`).join("");
  return `probe ${c.probe}: ${c.label} p=${p.toFixed(4)} (${c.probeMs.toFixed(2)} ms)${warn}\n`;
}

/**
 * The probes of repeated --probe flags, named by their folder; when two folders share a name (a/safety,
 * b/safety) each is named by the path as given, so the CLI never needs the library's name record.
 */
function namedProbes(dirs: string[], fingerprint: string): Record<string, LoadedProbe> {
  const loaded = loadProbes(dirs, fingerprint);
  const names = dirs.map((d) => basename(resolve(d)));
  const clash = new Set(names.filter((n, i) => names.indexOf(n) !== i));
  const out: Record<string, LoadedProbe> = {};
  dirs.forEach((d, i) => {
    const name = clash.has(names[i]) ? d : names[i];
    if (out[name] !== undefined) throw new InvalidArgumentError(`probe folder ${d} is given twice`, { field: "--probe" });
    out[name] = loaded[i];
  });
  return out;
}

export const generateCommand: Command = {
  name: "generate",
  summary: "generate text from a prompt (streams to stdout, timings to stderr)",
  usage: USAGE,
  async run(argv: string[]): Promise<number> {
    const v = parseFlags(argv, OPTIONS, USAGE);
    const prompt = required("prompt", v.prompt, '("" starts from BOS; see: onepass generate --help)');
    const options = {
      maxTokens: numberFlag("max-tokens", v["max-tokens"], { int: true, min: 0 }),
      temperature: numberFlag("temperature", v.temperature, { min: 0 }),
      topK: numberFlag("top-k", v["top-k"], { int: true, min: 0 }),
      topP: numberFlag("top-p", v["top-p"], { above: 0, max: 1 }),
      seed: numberFlag("seed", v.seed, { int: true }),
      stop: v.stop?.map(unescapeFlag),
    };
    const threadsAndDevice = engineFlags(v);
    const chat = v.chat === true || v.system !== undefined;

    const started = performance.now();
    const probeDirs = v.probe ?? [];
    const responseDirs = v["response-probe"] ?? [];
    if (v.block !== undefined && probeDirs.length === 0) throw new InvalidArgumentError("--block needs at least one --probe", { field: "--block" });
    if (v["block-response"] !== undefined && responseDirs.length === 0) {
      throw new InvalidArgumentError("--block-response needs at least one --response-probe", { field: "--block-response" });
    }
    // a graph build (first run of a model) shows a bar on stderr; stdout stays the generated text only
    const engine = await Engine.load(v.model, { ...threadsAndDevice, cacheDir: v["cache-dir"], onProgress: stageProgress(), ...(probeDirs.length + responseDirs.length > 0 ? { taps: true } : {}) });
    const abort = new AbortController();
    const onSigint = (): void => abort.abort();
    process.once("SIGINT", onSigint);
    try {
      const request = { prompt, chat, system: v.system, signal: abort.signal, ...options };
      const json = v.json === true;
      let classifications: Classification[] | undefined;
      const responseHistory: ResponseReading[] = [];
      const response = responseDirs.length === 0 ? undefined : {
        probes: namedProbes(responseDirs, engine.fingerprint),
        policy: v["block-response"] !== undefined ? { block: v["block-response"] } : ("annotate" as const),
        onReading: (r: ResponseReading) => void responseHistory.push(r),
      };
      const probed =
        probeDirs.length + responseDirs.length === 0
          ? undefined
          : generateWithProbes(engine, request, namedProbes(probeDirs, engine.fingerprint), {
              ...(response !== undefined ? { response } : {}),
              policy: v.block !== undefined ? { block: v.block } : "annotate",
              // printed inside the hook: before the first decode step, so before any generated text
              onClassified: (cs) => {
                classifications = cs;
                if (!json) for (const c of cs) process.stderr.write(formatClassification(c));
              },
            });
      for (const w of probed?.responseWarnings ?? []) process.stderr.write(`warning (response probe ${w})\n`);
      const generation = probed?.generation ?? engine.generate(request);
      const loadedMs = performance.now() - started;
      if (json) {
        const r = await generation.result;
        const out = {
          text: r.text, finishReason: r.finishReason, usage: r.usage, timings: r.timings,
          ...(classifications !== undefined ? { classifications } : {}),
          ...(response !== undefined ? { responseClassifications: responseHistory } : {}),
        };
        process.stdout.write(JSON.stringify(out) + "\n");
        return 0;
      }
      if (v["no-stream"] === true) {
        process.stdout.write((await generation.result).text);
      } else {
        for await (const chunk of generation) if (chunk.text.length > 0) process.stdout.write(chunk.text);
      }
      const result = await generation.result;
      if (result.finishReason === "blocked") {
        const by = (classifications ?? []).filter((c) => c.blocks).map((c) => `${c.probe}: ${c.label}`);
        process.stderr.write(`blocked (${by.join(", ")})\n`);
      }
      if (result.finishReason === "content_filter") {
        const r = responseHistory.filter((h) => h.blocks).map((h) => `${h.probe}: ${h.label} p=${h.probabilities[h.label].toFixed(4)} after ${h.tokens} tokens`);
        process.stderr.write(`\nstopped by a response probe (${r.join(", ")})\n`);
      } else if (responseHistory.length > 0) {
        const last = new Map(responseHistory.map((h) => [h.probe, h]));
        for (const h of last.values()) process.stderr.write(`response probe ${h.probe}: ${h.label} p=${h.probabilities[h.label].toFixed(4)} after ${h.tokens} tokens\n`);
      }
      if (process.stdout.isTTY && result.text.length > 0) process.stdout.write("\n");
      const totalMs = performance.now() - started;
      process.stderr.write(`load: ${loadedMs.toFixed(1)} ms\n` + formatTimings(result, totalMs));
      return 0;
    } catch (err) {
      throw inFlagTerms(err); // "maxTokens" → "--max-tokens": the user typed flags
    } finally {
      process.removeListener("SIGINT", onSigint);
      await engine.dispose();
    }
  },
};
