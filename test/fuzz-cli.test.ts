// Issue #8 fuzz suite: generated bad invocations of every command, run in-process through runCli (the same
// function bin/onepass runs, in one long-lived worker thread) so that hundreds of cases fit in seconds. Each case must exit non-zero with exactly
// one `onepass:` line on stderr that is not an internal error, or succeed with a checkable result; no case may
// hang (10 s cap), grow memory without bound, or modify anything outside its own --out (the inputs are hashed).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openFeatureCache } from "../src/data/features.js";
import { loadProbe } from "../src/probe/artifact.js";
import { mulberry32, STORIES260K, tempDir } from "./helpers.js";
import { closeCliWorker, runCaptured, syntheticCache } from "./reliability-helpers.js";

const CASES = Number(process.env.FUZZ_CASES ?? 240);
const CASE_MS = 10_000;
const MAX_RSS_GROWTH = 1536 * 2 ** 20;

/** sha256 over every path, type, size and content under `root` (symlinks and FIFOs by type only). */
function hashTree(root: string): string {
  const h = createHash("sha256");
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = lstatSync(p);
      h.update(`${p}\0${st.mode}\0`);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) h.update(readFileSync(p));
    }
  };
  walk(root);
  return h.digest("hex");
}

test(`fuzz: ${CASES} bad CLI invocations fail with one typed line or succeed correctly, touching nothing outside --out`, { timeout: 300_000 }, async () => {
  const ws = tempDir("fuzz-cli");
  const inputs = join(ws, "in"), outs = join(ws, "out");
  mkdirSync(inputs);
  mkdirSync(outs);
  const cacheDir = join(ws, "graph-cache");
  const env = { ONEPASS_CACHE_DIR: cacheDir };
  try {
    // Inputs: a model, data files good and bad, a feature cache, a probe, and corrupted copies of each.
    const I = (name: string) => join(inputs, name);
    copyFileSync(STORIES260K, I("model.gguf"));
    writeFileSync(I("data.csv"), "text,label\n" + Array.from({ length: 8 }, (_, i) => `"story ${i} about a cat",${i % 2}`).join("\n") + "\n");
    writeFileSync(I("data.jsonl"), Array.from({ length: 6 }, (_, i) => JSON.stringify({ text: `once ${i}`, label: i % 2 ? "pos" : "neg" })).join("\n") + "\n");
    writeFileSync(I("header.csv"), "text,label\n");
    writeFileSync(I("biglabel.csv"), "text,label\na,0\nb,1\nc,3000000\n");
    writeFileSync(I("frac.jsonl"), '{"text":"a","label":0}\n{"text":"b","label":1.5}\n');
    writeFileSync(I("broken.jsonl"), '{"text":"a","label":0}\n{"text":"b",\n');
    writeFileSync(I("empty.csv"), "");
    writeFileSync(I("garbage.gguf"), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 255)));
    writeFileSync(I("truncated.gguf"), readFileSync(STORIES260K).subarray(0, 5000));
    writeFileSync(I("notes.txt"), "mine\n");
    writeFileSync(I("quality.json"), JSON.stringify({ kind: "quality", runs: [{ task: "sst2", method: "scoring", metric: "accuracy", seed: 0, params: 1, test: { accuracy: 0.6 } }] }));
    mkdirSync(I("somedir"));
    writeFileSync(join(I("somedir"), "keep.txt"), "keep\n");
    assert.equal(spawnSync("mkfifo", [I("fifo")]).status, 0);
    await syntheticCache(I("feats"), 40, 11);
    await syntheticCache(I("feats-chat"), 20, 12, ["neg", "pos"], "chat");
    assert.equal((await runCaptured(["train", "--features", I("feats"), "--probe", "scoring", "--epochs", "1", "--quiet", "--out", I("probe")])).code, 0);
    const probeJson = JSON.parse(readFileSync(join(I("probe"), "probe.json"), "utf8"));
    const probeEdits: ((j: any) => void)[] = [
      (j) => { j.threshold = 7; }, (j) => { j.labelNames = ["x", "x"]; }, (j) => { j.config.kind = "pooling"; },
      (j) => { j.tokenization = null; }, (j) => { j.tokenization.maxTokens = -5; }, (j) => { delete j.model; },
      (j) => { j.shape.classes = 3000000; }, (j) => { j.version = 2; }, (j) => { j.config.heads = "8"; }, (j) => { j.weightsSha256 = "0".repeat(64); },
    ];
    probeEdits.forEach((edit, k) => {
      cpSync(I("probe"), I(`probe-bad${k}`), { recursive: true });
      const j = structuredClone(probeJson);
      edit(j);
      writeFileSync(join(I(`probe-bad${k}`), "probe.json"), JSON.stringify(j));
    });
    cpSync(I("probe"), I("probe-trunc"), { recursive: true });
    writeFileSync(join(I("probe-trunc"), "weights.safetensors"), readFileSync(join(I("probe"), "weights.safetensors")).subarray(0, 40));
    const cacheEdits: [string, (dir: string) => void][] = [
      ["manifest.json", (d) => writeFileSync(join(d, "manifest.json"), "{")],
      ["manifest.json", (d) => writeFileSync(join(d, "manifest.json"), JSON.stringify({ ...JSON.parse(readFileSync(join(d, "manifest.json"), "utf8")), labelNames: [] }))],
      ["index", (d) => { const f = readdirSync(d).find((n) => n.includes(".idx"))!; writeFileSync(join(d, f), readFileSync(join(d, f), "utf8").replace(/"t":\d+/, '"t":99999')); }],
      ["data", (d) => { const f = readdirSync(d).find((n) => n.endsWith(".f16") || n.includes(".bin") || n.includes("data"))!; writeFileSync(join(d, f), readFileSync(join(d, f)).subarray(0, 10)); }],
    ];
    cacheEdits.forEach(([, edit], k) => {
      cpSync(I("feats"), I(`feats-bad${k}`), { recursive: true });
      edit(I(`feats-bad${k}`));
    });
    // warm the graph cache so that engine-loading cases do not each build it
    assert.equal((await runCaptured(["generate", "--prompt", "a", "--max-tokens", "1", "--threads", "1"], CASE_MS, env)).code, 0);
    const before = hashTree(inputs);
    const cwdBefore = readdirSync(".").sort().join("\n"); // a relative --out must never land in the checkout

    const rand = mulberry32(Number(process.env.FUZZ_SEED ?? 20261203));
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
    const badNumbers = ["-1", "0", "1e309", "NaN", "", "ten", "1.5", "0x10", "99999999999", "-0", "Infinity", " 3"];
    const badPaths = [I("missing"), I("somedir"), I("notes.txt"), I("fifo"), "/proc/onepass-x", "/dev/null", "", "x".repeat(5000), I("somedir") + "/../notes.txt/x"];
    const models = [I("model.gguf"), I("garbage.gguf"), I("truncated.gguf"), I("fifo"), I("somedir"), I("missing.gguf"), I("data.csv")];
    const datas = [I("data.csv"), I("data.jsonl"), I("header.csv"), I("biglabel.csv"), I("frac.jsonl"), I("broken.jsonl"), I("empty.csv"), I("fifo"), I("somedir"), "nosuchpreset", "sst2"];
    const probes = [I("probe"), I("probe-trunc"), ...probeEdits.map((_, k) => I(`probe-bad${k}`)), I("feats"), I("somedir"), I("fifo")];
    const caches = [I("feats"), I("feats-chat"), ...cacheEdits.map((_, k) => I(`feats-bad${k}`)), I("probe"), I("somedir"), I("notes.txt")];

    /** A plausible invocation of one command (its --out, if any, in a fresh folder under outs). */
    const template = (cmd: string, out: string): string[] => {
      switch (cmd) {
        case "generate": return ["generate", "--model", pick(models), "--prompt", pick(["Once", "", "a ".repeat(3000)]), "--max-tokens", pick(["3", "0", "5000"]), "--threads", "1"];
        case "classify": return ["classify", "--probe", pick(probes), "--text", pick(["hello", ""]), "--threads", "1"];
        // presets look in an empty --data-dir: a real preset without --limit would be a long (correct) job, not a hang
        case "extract": return ["extract", "--data", pick(datas), "--data-dir", I("somedir"), "--max-tokens", "8", "--limit", pick(["4", "6"]), "--threads", "1", "--quiet", "--out", out];
        case "train": return ["train", "--features", pick(caches), "--probe", pick(["pooling", "scoring", "mha", "fixed", "linear"]), "--epochs", "1", "--quiet", "--out", out];
        case "eval": return ["eval", "--probe", pick(probes), "--features", pick(caches), "--quiet", ...(rand() < 0.5 ? ["--report", join(out, "r.html")] : [])];
        case "report": return ["report", pick([I("quality.json"), I("quality.json"), I("notes.txt"), I("data.jsonl"), I("feats"), I("fifo"), I("missing")]), "--out", pick([`${out}.html`, `${out}.html`, I("notes.txt"), I("somedir")])];
        case "convert": return ["convert", "--model", pick(models), "--to", pick(["hf", "onnx", "gguf"]), "--out", out];
        default: return ["inspect", "--model", pick(models)];
      }
    };
    const flagPool = ["--lr", "--batch", "--epochs", "--heads", "--layer", "--limit", "--max-tokens", "--top-p", "--top-k", "--temperature", "--seed", "--threads", "--shard-size", "--target-fpr", "--class-weights", "--accuracy-level", "--pool", "--stop", "--metric", "--search", "--seeds"];
    const mutate = (argv: string[]): string[] => {
      const a = [...argv];
      const m = Math.floor(rand() * 7);
      const flagAt = () => { const idx = a.map((x, i) => (x.startsWith("--") ? i : -1)).filter((i) => i > 0); return idx.length ? pick(idx) : -1; };
      if (m === 0) { const i = flagAt(); if (i > 0) a.splice(i, a[i + 1] !== undefined && !a[i + 1].startsWith("--") ? 2 : 1); } // drop a flag (maybe a required one)
      else if (m === 1) { // bad value; an output flag's stays inside this case's folder (never the working directory)
        const i = flagAt();
        if (i > 0 && a[i + 1] !== undefined && !a[i + 1].startsWith("--")) a[i + 1] = ["--out", "--report"].includes(a[i]) ? join(outs, `${pick(badNumbers)}-${a.length}`) : pick(badNumbers);
      }
      else if (m === 2) a.push(pick(flagPool), pick([...badNumbers, "mean", "0,0", "\\n\\n"])); // extra flag, maybe one that does not apply
      else if (m === 3) { const i = a.findIndex((x) => ["--model", "--data", "--features", "--probe", "--out"].includes(x)); if (i > 0) a[i + 1] = pick(badPaths); } // bad path
      else if (m === 4) a.push(pick(["--bogus", "positional", "-x", "--help=3", "--out"])); // malformed syntax
      else if (m === 5) { const i = a.indexOf("--out"); if (i > 0) a[i + 1] = pick([I("somedir"), I("notes.txt"), I("feats"), I("probe"), inputs, "."]); } // --out onto something precious
      else if (m === 6 && a[0] === "train") cpSync(I("probe"), a[a.indexOf("--out") + 1], { recursive: true }); // an earlier probe: replaced
      return a;
    };

    const commands = ["generate", "classify", "extract", "train", "eval", "convert", "inspect", "report"];
    const baseRss = process.memoryUsage().rss; // the worker thread's memory counts in this process's RSS
    let succeeded = 0, failedTyped = 0;
    const problems: string[] = [];
    for (let k = 0; k < CASES; k++) {
      const cmd = commands[k % commands.length];
      const out = join(outs, `case-${k}`);
      let argv = mutate(template(cmd, out));
      // --out onto the input probe: train may replace it (it is a probe folder), so that case writes to a copy
      if (argv[0] === "train" && argv[argv.indexOf("--out") + 1] === I("probe")) {
        cpSync(I("probe"), out, { recursive: true });
        argv = argv.map((x) => (x === I("probe") && argv[argv.indexOf(x) - 1] === "--out" ? out : x));
      }
      const r = await runCaptured(argv, CASE_MS, env);
      const shown = JSON.stringify(argv.map((x) => (x.length > 60 ? `${x.slice(0, 20)}…(${x.length})` : x)));
      const lines = r.stderr.split("\n").filter((l) => l.length > 0);
      if (process.env.FUZZ_VERBOSE === "1") process.stderr.write(`${r.code} ${r.ms.toFixed(0)}ms ${shown.slice(0, 200)} | ${lines[lines.length - 1]?.slice(0, 200)}\n`);
      const typed = lines.filter((l) => l.startsWith("onepass:"));
      if (r.code === -1) problems.push(`${shown}: no result after ${CASE_MS} ms`);
      else if (r.code === 0) {
        succeeded++;
        // a success must have produced what the command promises
        if (cmd === "train") loadProbe(argv[argv.indexOf("--out") + 1]);
        else if (cmd === "extract") openFeatureCache(argv[argv.indexOf("--out") + 1]).close();
        else if (cmd !== "generate" && r.stdout.length === 0) problems.push(`${shown}: exit 0 with no output`);
        if (typed.length > 0) problems.push(`${shown}: exit 0 but printed ${typed[0]}`);
      } else {
        failedTyped++;
        if (typed.length !== 1 || /internal error/.test(typed[0]) || lines[lines.length - 1] !== typed[0] || typed[0].length > 2100) {
          problems.push(`${shown}: exit ${r.code}, stderr ${JSON.stringify(r.stderr.slice(0, 600))}`);
        }
      }
      const now = hashTree(inputs);
      if (now !== before || readdirSync(".").sort().join("\n") !== cwdBefore) {
        problems.push(`${shown}: modified the inputs or the working directory`);
        break;
      }
      rmSync(out, { recursive: true, force: true });
      for (const name of readdirSync(outs)) if (!name.startsWith("case-")) rmSync(join(outs, name), { recursive: true, force: true });
    }
    const growth = process.memoryUsage().rss - baseRss;
    assert.deepEqual(problems, []);
    assert.ok(growth < MAX_RSS_GROWTH, `RSS grew by ${(growth / 2 ** 20).toFixed(0)} MiB`);
    assert.ok(failedTyped >= CASES / 2, `${failedTyped} typed failures, ${succeeded} successes`);
    assert.ok(succeeded > 0, "no case succeeded: the templates are broken");
    assert.equal(existsSync(join(outs, ".")), true);
  } finally {
    await closeCliWorker();
    rmSync(ws, { recursive: true, force: true });
  }
});
