/** `onepass bench quality|cost`: the paper's quality and cost tables on a model (src/bench/). */
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "../command.js";
import { stageProgress } from "../progress.js";
import { InvalidArgumentError } from "../../errors.js";
import { writeFileAtomic } from "../../util/atomic.js";
import { engineFlags, numberFlag, parseFlags } from "../args.js";
import { DEFAULT_QUALITY_METHODS, DEFAULT_QUALITY_TASKS, QUALITY_METHODS, QUALITY_TASKS, checkQualitySelection, qualityMarkdown, readQualityResults, runQualityBench } from "../../bench/quality.js";
import { runCostBench } from "../../bench/cost.js";

const usage = `usage: onepass bench quality [--model M] [--data-dir D] [--tasks T,...] [--methods M,...] [--seeds 3]
                       [--budget SECONDS] [--limit N] [--max-tokens 256] [--work DIR] [--out DIR]
       onepass bench cost [--model M] [--guard G]... [--qwen] [--data-dir D] [--samples 40] [--runs 1] [--out DIR]

quality: probes and baselines on the same seeded train/validation splits, every choice made on validation,
the test split scored once per final model; mean ± std over seeds. Writes OUT/quality.json after every
(task, method, seed) cell and OUT/quality.md (the paper's layout) at the end. Resumable: rerun the same
command after an interruption and finished cells are skipped.

  --model M             model (default: the built-in stories260K)
  --data-dir D          the data sets (default $ONEPASS_DATA_DIR or ../shared/data)
  --tasks T,...         ${Object.keys(QUALITY_TASKS).join(", ")} (default ${DEFAULT_QUALITY_TASKS.join(",")})
  --methods M,...       ${QUALITY_METHODS.join(", ")} (default all)
  --seeds N             seeds 0..N-1 (default 3)
  --budget SECONDS      start no new cell after this long; a rerun continues (default: no limit)
  --limit N             at most N examples per split (stratified sample; default: all)
  --max-tokens N        hidden states cut at N tokens (default 256)
  --work DIR            feature caches, logits, prompt scores (default .onepass-cache/bench-quality)
  --out DIR             results folder (default results)
  --table-only          rewrite OUT/quality.md from OUT/quality.json, run nothing

cost: median and p95 ms per request (batch 1, ToxicChat test prompts cut at --max-length tokens, one new
token) of the model alone, with a pooling / scoring / MHA probe, and guard-then-serve with each guard.
Writes OUT/cost.json and OUT/cost.md.

  --guard G             a guard model (repeatable; default: the model itself, and for the built-in model a
                        random model of its shape with 3× the layers)
  --qwen                also a random Qwen2.5-0.5B-shaped model with Qwen2.5-0.5B/Llama-3.2-1B-shaped guards
  --samples N           prompts (default 40)    --runs N   passes over them (default 1)
  --max-length N        prompt tokens kept (default 512)

Both: --threads N, --device cpu|cuda|auto, --quiet (no progress bars).
`;

const list = (s: string | undefined) => s?.split(",").map((x) => x.trim()).filter((x) => x !== "");

/** An existing Markdown file at `path` is replaced only when it is one of ours (starts with `marker`). */
function checkOurs(path: string, marker: string): void {
  if (!existsSync(path)) return;
  if (!statSync(path).isFile() || !readFileSync(path, "utf8").startsWith(marker)) {
    throw new InvalidArgumentError(`exists and is not a result this command wrote; choose another --out or remove it yourself`, { file: path, field: "--out" });
  }
}

function outDir(out: string): string {
  if (existsSync(out) && !statSync(out).isDirectory()) throw new InvalidArgumentError("is not a folder", { file: out, field: "--out" });
  mkdirSync(out, { recursive: true });
  return out;
}

export const benchCommand: Command = {
  name: "bench",
  summary: "the paper's quality (probes vs baselines) and cost tables on a model",
  usage,
  async run(argv) {
    const sub = argv[0];
    if (sub !== "quality" && sub !== "cost") throw new InvalidArgumentError(`expects 'quality' or 'cost' first, got ${sub === undefined ? "nothing" : `'${sub}'`} (see onepass bench --help)`, { field: "bench" });
    const common = { model: { type: "string" }, "data-dir": { type: "string" }, out: { type: "string" }, threads: { type: "string" }, device: { type: "string" }, quiet: { type: "boolean" } } as const;
    if (sub === "quality") {
      const v = parseFlags(argv.slice(1), { ...common, tasks: { type: "string" }, methods: { type: "string" }, seeds: { type: "string" }, budget: { type: "string" }, limit: { type: "string" }, "max-tokens": { type: "string" }, work: { type: "string" }, "table-only": { type: "boolean" } }, usage);
      const tasks = list(v.tasks) ?? DEFAULT_QUALITY_TASKS;
      const methods = list(v.methods) ?? DEFAULT_QUALITY_METHODS;
      checkQualitySelection(tasks, methods);
      const seeds = numberFlag("seeds", v.seeds, { int: true, min: 1, max: 100 }) ?? 3;
      const budget = numberFlag("budget", v.budget, { above: 0 });
      const limit = numberFlag("limit", v.limit, { int: true, min: 2 });
      const maxTokens = numberFlag("max-tokens", v["max-tokens"], { int: true, min: 1, max: 1 << 20 }) ?? 256;
      const out = outDir(v.out ?? "results");
      checkOurs(join(out, "quality.md"), "Quality on ");
      if (v["table-only"] === true) {
        const r = readQualityResults(join(out, "quality.json"));
        if (r === undefined) throw new InvalidArgumentError("no quality.json to make a table from", { file: join(out, "quality.json"), field: "--table-only" });
        const md = qualityMarkdown(r, { tasks: v.tasks !== undefined ? tasks : undefined, methods: v.methods !== undefined ? methods : undefined, seeds });
        writeFileAtomic(join(out, "quality.md"), md);
        process.stdout.write(md);
        return 0;
      }
      const s = await runQualityBench({
        model: v.model, engine: engineFlags(v), dataDir: v["data-dir"], tasks, methods, seeds, maxTokens, workDir: v.work ?? ".onepass-cache/bench-quality", outDir: out,
        ...(budget !== undefined ? { budgetSeconds: budget } : {}), ...(limit !== undefined ? { limit } : {}),
        onProgress: stageProgress({ enabled: v.quiet !== true }), log: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(s.markdown);
      process.stderr.write(`${s.computed} cells computed, ${s.skipped} already there${s.remaining > 0 ? `, ${s.remaining} left (budget): rerun to continue` : ""}; ${join(out, "quality.json")}\n`);
      return 0;
    }
    const v = parseFlags(argv.slice(1), { ...common, guard: { type: "string", multiple: true }, qwen: { type: "boolean" }, samples: { type: "string" }, runs: { type: "string" }, "max-length": { type: "string" } }, usage);
    const samples = numberFlag("samples", v.samples, { int: true, min: 1, max: 100000 }) ?? 40;
    const runs = numberFlag("runs", v.runs, { int: true, min: 1, max: 1000 }) ?? 1;
    const maxLength = numberFlag("max-length", v["max-length"], { int: true, min: 1, max: 1 << 20 }) ?? 512;
    for (const g of v.guard ?? []) if (!existsSync(g)) throw new InvalidArgumentError("guard model not found", { file: g, field: "--guard" });
    const out = outDir(v.out ?? "results");
    checkOurs(join(out, "cost.md"), "Cost per request");
    if (existsSync(join(out, "cost.json"))) {
      let ok = false;
      try { ok = Array.isArray(JSON.parse(readFileSync(join(out, "cost.json"), "utf8"))?.rows); } catch { ok = false; }
      if (!ok) throw new InvalidArgumentError("exists and is not a cost result; choose another --out or remove it yourself", { file: join(out, "cost.json"), field: "--out" });
    }
    const { results, markdown } = await runCostBench({ model: v.model, guards: v.guard, qwen: v.qwen === true, dataDir: v["data-dir"], samples, runs, maxLength, engine: engineFlags(v), onProgress: stageProgress({ enabled: v.quiet !== true }) });
    writeFileAtomic(join(out, "cost.json"), JSON.stringify(results, null, 1) + "\n");
    writeFileAtomic(join(out, "cost.md"), markdown);
    process.stdout.write(markdown);
    return 0;
  },
};
