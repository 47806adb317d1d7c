// Trains the built-in probes that `onepass serve` loads by default, on the built-in stories260K model, from
// the data sets in ../shared/data (or $ONEPASS_DATA_DIR), through the same CLI commands a user runs
// (extract → train → eval). Re-runnable: feature caches live under .onepass-cache/build-probes (resumable),
// seeds are fixed, and each probe folder is replaced atomically by `onepass train`.
//
//   npm run build:probes                      (builds first; writes assets/probes/<name>/ and their ATTRIBUTION.md)
//   node scripts/build-probes.mjs safety      (one probe)
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";

const CLI = "dist/src/cli/main.js";
const CACHE = ".onepass-cache/build-probes";
// Every text becomes one user message in the model's chat template, the way /v1/chat/completions and
// /v1/moderations present it; the first 128 tokens are kept (long ToxicChat prompts).
const MAX_TOKENS = "128";

const PROBES = [
  {
    name: "sentiment",
    data: "sst2",
    // the default training recipe (standardised inputs, AdamW with early stopping on validation loss; see README)
    trainArgs: ["--probe", "scoring", "--metric", "accuracy"],
    attribution: `Trained on the SST-2 subset of Palma et al. (2025) (\`palma2025/sst2_{train,test}.csv\` in the shared
data; 6,920 training / 1,821 test sentences of the Stanford Sentiment Treebank, binary labels negative/positive).
SST-2 is part of GLUE (Socher et al. 2013; Wang et al. 2018); the copy comes from a public GitHub snapshot listed in
the data's SOURCES.md. Use under the GLUE / SST terms (research use; cite Socher et al. 2013).`,
  },
  {
    name: "safety",
    data: "toxicchat",
    trainArgs: ["--probe", "scoring", "--metric", "f1", "--class-weights", "balanced"],
    attribution: `Trained on ToxicChat (lmsys/toxic-chat, version toxicchat0124, Lin et al. 2023), the human-annotated
train split (2,801 user prompts, label = toxicity: non-toxic/toxic) as converted by JUDGE-BENCH
(\`toxicchat/judgebench_toxic_chat_{train,test}.json\` in the shared data). **ToxicChat is licensed CC-BY-NC-4.0:
these probe weights are derived from it and may be used for non-commercial purposes only**, with attribution to
Lin et al., "ToxicChat: Unveiling Hidden Challenges of Toxicity Detection in Real-World User-AI Conversation",
EMNLP Findings 2023.`,
  },
];

function run(args) {
  console.error(`$ onepass ${args.join(" ")}`);
  const r = spawnSync(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8" });
  if (r.status !== 0) {
    console.error(`onepass ${args[0]} failed (exit ${r.status})`);
    process.exit(r.status ?? 1);
  }
  return r.stdout;
}

if (!existsSync(CLI)) {
  console.error(`${CLI} is missing: run npx tsc -p tsconfig.json first (npm run build:probes does)`);
  process.exit(1);
}
// `--eval-only`: re-score the committed probes and rewrite their ATTRIBUTION.md without retraining
const evalOnly = process.argv.includes("--eval-only");
const only = process.argv.slice(2).filter((a) => !a.startsWith("--"));
for (const p of PROBES) {
  if (only.length > 0 && !only.includes(p.name)) continue;
  const feats = {};
  for (const split of ["train", "test"]) {
    feats[split] = join(CACHE, `${p.name}-${split}`);
    run(["extract", "--data", p.data, "--split", split, "--chat", "--max-tokens", MAX_TOKENS, "--out", feats[split]]);
  }
  const out = join("assets", "probes", p.name);
  mkdirSync(out, { recursive: true });
  if (!evalOnly) {
    // train refuses to replace a folder holding anything but a probe (our ATTRIBUTION.md): train next to the
    // caches, then copy the probe's two files over the built-in one's
    const trained = join(CACHE, `${p.name}-probe`);
    run(["train", "--features", feats.train, ...p.trainArgs, "--seed", "0", "--out", trained]);
    for (const f of ["probe.json", "weights.safetensors"]) copyFileSync(join(trained, f), join(out, f));
  }
  const metrics = JSON.parse(run(["eval", "--probe", out, "--features", feats.test, "--json", "--quiet"]));
  const fmt = (x) => (typeof x === "number" ? x.toFixed(3) : "n/a");
  const line = `accuracy ${fmt(metrics.accuracy)}, macro-F1 ${fmt(metrics.macroF1)}, F1 ${fmt(metrics.f1)}, ROC-AUC ${fmt(metrics.rocAuc)}, AUPRC ${fmt(metrics.auprc)}, precision ${fmt(metrics.precision)}, recall ${fmt(metrics.recall)} (n = ${metrics.n})`;
  console.error(`${p.name}: test ${line}`);
  writeFileSync(
    join(out, "ATTRIBUTION.md"),
    `# Built-in probe \`${p.name}\`\n\n${p.attribution}\n\nBuilt by \`npm run build:probes\` (scripts/build-probes.mjs) on the built-in stories260K model ` +
      `(a 260K-parameter story model: expect modest accuracy). Held-out test split (${p.data}, test): ${line}.\n`,
  );
}
