/** `onepass extract`: run the model once over a dataset and store its hidden states (resumable feature cache). */
import type { Command } from "../command.js";
import { engineFlags, numberFlag, oneOf, parseFlags, required } from "../args.js";
import { ProgressBar, stageProgress } from "../progress.js";
import { loadDatasetArg } from "../../data/datasets.js";
import { estimateFeatureBytes, extractFeatures, type FeatureMode } from "../../data/features.js";
import { engineSource } from "../../data/source.js";
import { Engine } from "../../engine/engine.js";
import { InvalidArgumentError } from "../../errors.js";

const usage = `usage: onepass extract --data D --out DIR [options]

Runs the model once per example and stores its hidden states [L+1, T, d] as fp16 in DIR (sharded, with an
index and a manifest). Rerunning the same command after an interruption resumes where it stopped.

  --model M             .gguf file or Hugging Face folder (default: the built-in stories260K)
  --data D              a dataset preset (sst2, imdb, emotion, sst2-glue, toxicchat, wildguardmix, refusal,
                        guardreasoner-*, normalized/*, ...) or a file (.jsonl .csv .tsv .txt .json .parquet)
  --data-dir DIR        where presets live (default $ONEPASS_DATA_DIR or ../shared/data)
  --split S             train | test | ... (default: the preset's first split)
  --text-field F        dotted path of the text (default: the preset's, or "text")
  --label-field F       dotted path of the label (default: the preset's, or "label")
  --limit N             a file: its first N examples; a preset: a stratified sample of N (each class in
                        proportion, spread evenly over the file, file order kept)
  --mode full|summary   full [L+1, T, d] (default) or per-layer mean and max [L+1, 2, d]
  --max-tokens N        keep the first N tokens of each text (default: the model's context length)
  --chat                wrap each text as a user message in the model's chat template
  --target prompt|response
                        prompt (default): the text's states. response: each example is prompt + response
                        (presets beavertails-response, saferlhf-response, wildguardtest-response, or a file with
                        --response-field); one pass over both, only the response tokens' states are stored, the
                        prompt chat-formatted when the model has a chat template (--template raw to turn it off)
  --response-field F    dotted path of the response in a file (default "response" with --target response)
  --template raw|chat   how prompts are tokenised (default: raw; with --target response, chat when the model
                        has a template)
  --shard-size N        examples per shard file (default 256)
  --threads N           ORT threads
  --device D            cpu (default) | cuda | auto (CUDA when installed, else CPU with a notice)
  --quiet               no progress bar
  --out DIR             cache folder
`;

function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

/** "[neg 120, pos 80]": how many examples each class has. */
function classCounts(examples: readonly { label: number }[], names: readonly string[]): string {
  const counts = new Array<number>(names.length).fill(0);
  for (const e of examples) counts[e.label]++;
  return `[${names.map((n, k) => `${n} ${counts[k]}`).join(", ")}]`;
}

const OPTIONS = {
  model: { type: "string" },
  data: { type: "string" },
  "data-dir": { type: "string" },
  split: { type: "string" },
  "text-field": { type: "string" },
  "label-field": { type: "string" },
  limit: { type: "string" },
  mode: { type: "string" },
  "max-tokens": { type: "string" },
  chat: { type: "boolean" },
  target: { type: "string" },
  "response-field": { type: "string" },
  template: { type: "string" },
  "shard-size": { type: "string" },
  threads: { type: "string" },
  device: { type: "string" },
  quiet: { type: "boolean" },
  out: { type: "string" },
} as const;

export const extractCommand: Command = {
  name: "extract",
  summary: "run the model over a dataset and cache its hidden states for probe training (resumable)",
  usage,
  async run(argv) {
    const values = parseFlags(argv, OPTIONS, usage);
    const data = required("data", values.data);
    const outDir = required("out", values.out);
    const mode: FeatureMode = oneOf("mode", values.mode, ["full", "summary"] as const) ?? "full";
    const limit = numberFlag("limit", values.limit, { int: true, min: 1 });
    const maxTokensArg = numberFlag("max-tokens", values["max-tokens"], { int: true, min: 1 });
    const shardSize = numberFlag("shard-size", values["shard-size"], { int: true, min: 1 });
    const threadsAndDevice = engineFlags(values);
    const target = oneOf("target", values.target, ["prompt", "response"] as const) ?? "prompt";
    const templateArg = oneOf("template", values.template, ["raw", "chat"] as const);
    const dataset = await loadDatasetArg(data, {
      ...(target === "response" ? { responseField: values["response-field"] ?? "response", dropMissingLabels: true } : {}),
      split: values.split,
      dataDir: values["data-dir"],
      textField: values["text-field"],
      labelField: values["label-field"],
      limit,
    });
    const engine = await Engine.load(values.model, { taps: true, onProgress: stageProgress({ enabled: !values.quiet }), ...threadsAndDevice });
    try {
      if (dataset.examples.length === 0) {
        throw new InvalidArgumentError(`${dataset.name}: no examples${target === "response" ? " with a response" : ""}`, { field: target === "response" ? "response" : "data" });
      }
      if (target === "response" && dataset.responseField === undefined) {
        throw new InvalidArgumentError(`--target response needs prompt + response data: ${dataset.name} has no response field`, { field: "target" });
      }
      // response probes read the answer to a prompt as served: chat-formatted when the model has a template
      const template = values.chat ? "chat" : templateArg ?? (target === "response" && engine.tokenizer.chatTemplate !== undefined ? "chat" : "raw");
      const source = engineSource(engine, { template });
      const maxTokens = Math.min(maxTokensArg ?? engine.contextLength, engine.contextLength);
      const est = estimateFeatureBytes({ source, examples: dataset.examples, mode, maxTokens });
      process.stderr.write(
        `extract: ${dataset.examples.length} examples of ${dataset.name}${dataset.split ? ` (${dataset.split})` : ""}, ` +
          `labels ${classCounts(dataset.examples, dataset.labelNames)}, ${source.layers} layers × d ${source.dim}, mode ${mode}\n` +
          `extract: estimated size ≈ ${formatBytes(est.bytes)} (avg ${est.avgTokens.toFixed(1)} tokens/example${est.measured ? "" : ", guessed"}, fp16)\n`,
      );
      const present = new Set(dataset.examples.map((e) => e.label)).size;
      if (present < 2) process.stderr.write(`extract: warning: only ${present} class occurs in these examples; a probe needs at least 2 to train\n`);
      const bar = new ProgressBar({ total: dataset.examples.length, label: "extract", unit: "ex", enabled: !values.quiet });
      // Ctrl-C stops after the current example; the cache stays resumable.
      const stop = new AbortController();
      const onSigint = () => stop.abort();
      process.once("SIGINT", onSigint);
      let result;
      try {
        result = await extractFeatures({
          source,
          examples: dataset.examples,
          labelNames: dataset.labelNames,
          dataset: { name: dataset.name, split: dataset.split, task: dataset.task, files: dataset.files, textField: dataset.textField, labelField: dataset.labelField },
          outDir,
          mode,
          shardSize,
          maxTokens,
          target,
          signal: stop.signal,
          onProgress: (p) => bar.update(p.done),
        });
      } finally {
        process.removeListener("SIGINT", onSigint);
        bar.finish();
      }
      const resumed = result.resumedFrom > 0 ? ` (${result.resumedFrom} were already there)` : "";
      process.stderr.write(
        result.complete
          ? `extract: done, ${result.count} examples${resumed}, ${formatBytes(result.bytes)} in ${outDir}\n`
          : `extract: stopped at ${result.count} of ${dataset.examples.length}; run the same command again to resume\n`,
      );
      return result.complete ? 0 : 130;
    } finally {
      await engine.dispose();
    }
  },
};
