// Issue #8: nothing a user wrote is lost, no stack traces, no silent garbage. One test (or more) per item.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { extractFeatures, type HiddenStateSource } from "../src/data/features.js";
import { loadDataset, stratifiedSample } from "../src/data/datasets.js";
import { DatasetError, InvalidArgumentError, NonFiniteError, ProbeError } from "../src/errors.js";
import { Engine } from "../src/engine/engine.js";
import { unescapeFlag } from "../src/cli/args.js";
import { availableParallelism } from "node:os";
import { readGgufHeader } from "../src/model/gguf/index.js";
import { loadProbe } from "../src/probe/artifact.js";
import { plantedTask } from "./probe-synthetic.js";
import { STORIES260K, tempDir } from "./helpers.js";
import { closeCliWorker, runCaptured, syntheticCache } from "./reliability-helpers.js";

const CLI = "dist/src/cli/main.js";
const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 60_000, env: { ...process.env, ...env } });

/** The CLI in this process (runCli, as bin/onepass runs it): most cases here need no process of their own. */
async function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  const r = await runCaptured(args, 60_000, env);
  return { status: r.code, stdout: r.stdout, stderr: r.stderr };
}

after(() => closeCliWorker());

/** One stderr line, starting "onepass:", that is not an internal error. */
function assertTypedFailure(r: { status: number | null; stderr: string }, pattern?: RegExp): void {
  assert.equal(r.status, 1, r.stderr);
  const lines = r.stderr.split("\n").filter((l) => l.startsWith("onepass:"));
  assert.equal(lines.length, 1, r.stderr);
  assert.doesNotMatch(lines[0], /internal error/);
  if (pattern !== undefined) assert.match(lines[0], pattern);
}

test("1. train --out never deletes what is not an onepass probe folder; an earlier probe is replaced", async () => {
  const dir = tempDir("rel-loss");
  try {
    const feats = join(dir, "feats");
    await syntheticCache(feats);
    const keep = join(dir, "keep");
    mkdirSync(keep);
    writeFileSync(join(keep, "a.txt"), "x");
    const file = join(dir, "notes.txt");
    writeFileSync(file, "mine");
    const base = ["train", "--features", feats, "--probe", "pooling", "--epochs", "1", "--quiet"];
    for (const out of [keep, file, feats, "."]) {
      const r = await run([...base, "--out", out]);
      assertTypedFailure(r, /not an onepass probe folder|not a folder|holds/);
    }
    assert.equal(readFileSync(join(keep, "a.txt"), "utf8"), "x");
    assert.equal(readFileSync(file, "utf8"), "mine");
    assert.ok(existsSync(join(feats, "manifest.json")));
    assert.deepEqual(readdirSync(dir).filter((n) => n.includes(".tmp") || n.includes(".old")), []);
    // A probe folder is written, then replaced atomically by a second run.
    const probe = join(dir, "probe");
    assert.equal((await run([...base, "--out", probe])).status, 0);
    const first = readFileSync(join(probe, "probe.json"), "utf8");
    const again = await run([...base, "--seed", "7", "--out", probe]);
    assert.equal(again.status, 0, again.stderr);
    assert.notEqual(readFileSync(join(probe, "probe.json"), "utf8"), first);
    assert.deepEqual(readdirSync(probe).sort(), ["probe.json", "weights.safetensors"]);
    assert.deepEqual(readdirSync(dir).sort(), ["feats", "keep", "notes.txt", "probe"]);
    // convert --out into a non-empty folder, and eval --report over a file that is not a report, are refused.
    assertTypedFailure(await run(["convert", "--model", STORIES260K, "--to", "hf", "--out", keep]), /not empty/);
    assertTypedFailure(await run(["eval", "--probe", probe, "--features", feats, "--report", file]), /not an onepass report/);
    assert.equal(readFileSync(file, "utf8"), "mine");
    const report = join(dir, "r.html");
    assert.equal((await run(["eval", "--probe", probe, "--features", feats, "--report", report, "--quiet"])).status, 0);
    assert.equal((await run(["eval", "--probe", probe, "--features", feats, "--report", report, "--quiet"])).status, 0, "an earlier report is replaced");
    // onepass report --out: the same rule (an eval report is not a results page either)
    const results = join(dir, "quality.json");
    writeFileSync(results, JSON.stringify({ kind: "quality", runs: [{ task: "sst2", method: "scoring", metric: "accuracy", seed: 0, params: 1, test: { accuracy: 0.6 } }] }));
    assertTypedFailure(await run(["report", results, "--out", file]), /not an onepass report/);
    assert.equal(readFileSync(file, "utf8"), "mine");
    assertTypedFailure(await run(["report", results, "--out", report]), /not an onepass report/);
    const page = join(dir, "page.html");
    assert.equal((await run(["report", results, "--out", page])).status, 0);
    assert.equal((await run(["report", results, "--out", page])).status, 0, "an earlier results page is replaced");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("2. ORT telemetry is off by default: a 100k-character prompt is a typed error, not a segfault, and no telemetry database appears", () => {
  const home = tempDir("rel-home");
  try {
    const prompt = "a ".repeat(50_000); // 100k characters on the command line
    const r = cli(["generate", "--prompt", prompt, "--max-tokens", "4", "--threads", "1"], { HOME: home, ONEPASS_CACHE_DIR: join(home, "cache") });
    assert.equal(r.signal, null, `killed by ${r.signal}`);
    assertTypedFailure(r, /exceeds the context window/);
    assert.equal(existsSync(join(home, ".cache", "Microsoft")), false, "ORT telemetry database written");
    // A short prompt still generates with telemetry off.
    const ok = cli(["generate", "--prompt", "Once upon a time", "--max-tokens", "4", "--temperature", "0", "--threads", "1"], { HOME: home, ONEPASS_CACHE_DIR: join(home, "cache") });
    assert.equal(ok.status, 0, ok.stderr);
    assert.ok(ok.stdout.length > 0);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test("3. labels: unbounded / gapped integer ids, header-only files, 1.5 are typed errors; presets sample every class; one class does not train", async () => {
  const dir = tempDir("rel-labels");
  try {
    const big = join(dir, "big.csv");
    writeFileSync(big, "text,label\na,0\nb,1\nc,3000000\n");
    await assert.rejects(loadDataset({ files: [{ path: big }] }), (e: unknown) => e instanceof DatasetError && /line 4/.test(e.message) && /too large/.test(e.message));
    const gap = join(dir, "gap.csv");
    writeFileSync(gap, "text,label\na,0\nb,1\nc,7\n");
    await assert.rejects(loadDataset({ files: [{ path: gap }] }), (e: unknown) => e instanceof DatasetError && /line 4: label 7 implies 8 classes but only 3/.test(e.message));
    const header = join(dir, "header.csv");
    writeFileSync(header, "text,label\n");
    await assert.rejects(loadDataset({ files: [{ path: header }] }), (e: unknown) => e instanceof DatasetError && /no examples/.test(e.message));
    const frac = join(dir, "frac.jsonl");
    writeFileSync(frac, '{"text":"a","label":0}\n{"text":"b","label":1.5}\n');
    await assert.rejects(loadDataset({ files: [{ path: frac }] }), (e: unknown) => e instanceof DatasetError && /line 2: label 1.5 is not a class name or a non-negative integer class id/.test(e.message));
    // A class-ordered file: a stratified sample of 10 has both classes, 5 each, in file order.
    const rows = Array.from({ length: 100 }, (_, i) => ({ text: `t${i}`, label: i < 80 ? 0 : 1 }));
    const sample = stratifiedSample(rows, 10);
    assert.deepEqual(sample.map((e) => e.label), [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    assert.deepEqual(sample.map((e) => e.text), ["t5", "t15", "t25", "t35", "t45", "t55", "t65", "t75", "t85", "t95"]);
    // Training on one class is refused (today it reported validation F1 1.0).
    const one = join(dir, "one");
    const task = plantedTask(30, { layers: 4, dim: 16, layer: 1, position: 0, seed: 5 });
    const byText = new Map(task.hidden.map((h, i) => [`p${i}`, h]));
    await extractFeatures({
      source: { fingerprint: "m", layers: 4, dim: 16, tokenization: { addBos: true, template: "raw" }, async hidden(t) { return byText.get(t)!; } },
      examples: task.hidden.map((_, i) => ({ text: `p${i}`, label: 0 })), labelNames: ["a", "b"], outDir: one, mode: "full",
    });
    assertTypedFailure(await run(["train", "--features", one, "--probe", "pooling", "--quiet", "--out", join(dir, "p")]), /1 class .*at least 2/);
    assert.equal(existsSync(join(dir, "p")), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("4. NaN: a NaN weight fails generation, NaN features fail extraction, a diverging run fails training, a NaN probe fails loading", async () => {
  const dir = tempDir("rel-nan");
  try {
    // stories260K with one NaN in output_norm.weight (F32): every logit becomes NaN.
    const model = join(dir, "nan.gguf");
    copyFileSync(STORIES260K, model);
    const norm = readGgufHeader(model).tensors.find((t) => t.name === "output_norm.weight")!;
    assert.equal(norm.type.name, "F32");
    const fd = openSync(model, "r+");
    writeSync(fd, Buffer.from(new Float32Array([NaN]).buffer), 0, 4, norm.dataOffset);
    closeSync(fd);
    const g = await run(["generate", "--model", model, "--prompt", "Once", "--max-tokens", "5", "--threads", "1"], { ONEPASS_CACHE_DIR: join(dir, "cache") });
    assertTypedFailure(g, /NaN logits .* at the prefill/);
    assert.equal(g.stdout, "");
    // NaN features stop extraction at the example, naming it.
    const h = plantedTask(3, { layers: 4, dim: 16, layer: 1, position: 0, seed: 2 }).hidden;
    h[1].data[7] = NaN;
    await assert.rejects(
      extractFeatures({
        source: { fingerprint: "m", layers: 4, dim: 16, tokenization: { addBos: true, template: "raw" }, async hidden(t) { return h[Number(t)]; } },
        examples: [0, 1, 2].map((i) => ({ text: String(i), label: i % 2 })), labelNames: ["a", "b"], outDir: join(dir, "nanfeats"), mode: "full",
      }),
      (e: unknown) => e instanceof NonFiniteError && /example 1/.test(e.message),
    );
    // --lr 1e30 diverges: a typed error naming the step, and no probe folder.
    const feats = join(dir, "feats");
    await syntheticCache(feats);
    assertTypedFailure(await run(["train", "--features", feats, "--probe", "pooling", "--head-solver", "adam", "--lr", "1e30", "--quiet", "--out", join(dir, "p")]), /training diverged: the loss is NaN at epoch \d+, step \d+ of \d+/);
    assert.equal(existsSync(join(dir, "p")), false);
    // A probe whose weights were edited to NaN is refused on load.
    const probe = join(dir, "ok");
    assert.equal((await run(["train", "--features", feats, "--probe", "pooling", "--epochs", "1", "--quiet", "--out", probe])).status, 0);
    const w = join(probe, "weights.safetensors");
    const bytes = readFileSync(w);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    bytes.writeFloatLE(NaN, 8 + headerLen);
    writeFileSync(w, bytes);
    // (the stored checksum would catch the edit first: drop it, as in a probe saved before checksums existed)
    const pj = JSON.parse(readFileSync(join(probe, "probe.json"), "utf8"));
    delete pj.weightsSha256;
    writeFileSync(join(probe, "probe.json"), JSON.stringify(pj));
    assert.throws(() => loadProbe(probe), (e: unknown) => e instanceof ProbeError && /NaN/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Runs `fn` with a fresh tmpfs of `size` mounted at a temp folder (root only: CI runs as root, so never skipped). */
async function withTmpfs<T>(size: string, fn: (mnt: string) => Promise<T>): Promise<T> {
  const mnt = tempDir("rel-mnt");
  const m = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", mnt], { encoding: "utf8" });
  assert.equal(m.status, 0, `mount -t tmpfs needs root (CI runs as root): ${m.stderr}`);
  try {
    return await fn(mnt);
  } finally {
    spawnSync("umount", [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
}

test("5. full, read-only and forbidden folders are one-line typed errors naming the path (extract, train, convert, graph cache)", async () => {
  const dir = tempDir("rel-fs");
  try {
    const feats = join(dir, "feats");
    await syntheticCache(feats);
    const cache = join(dir, "cache");
    // warm the graph cache (writable) so that the extract runs below only write their features
    assert.equal((await run(["generate", "--prompt", "a", "--max-tokens", "1", "--threads", "1"], { ONEPASS_CACHE_DIR: cache })).status, 0);
    const data = "test/fixtures/palma2025/sst2_train.csv";
    await withTmpfs("48k", async (mnt) => {
      const r = await run(["extract", "--data", data, "--limit", "40", "--max-tokens", "16", "--threads", "1", "--quiet", "--out", join(mnt, "f")], { ONEPASS_CACHE_DIR: cache });
      assertTypedFailure(r, /cannot write the feature cache \(ENOSPC: no space left on device/);
      assert.match(r.stderr, new RegExp(join(mnt, "f")));
    });
    await withTmpfs("1m", async (mnt) => {
      mkdirSync(join(mnt, "graphs"));
      assert.equal(spawnSync("mount", ["-o", "remount,ro", mnt]).status, 0);
      assertTypedFailure(await run(["extract", "--data", data, "--limit", "4", "--threads", "1", "--quiet", "--out", join(mnt, "f")], { ONEPASS_CACHE_DIR: cache }), /EROFS: read-only file system/);
      assertTypedFailure(await run(["train", "--features", feats, "--probe", "pooling", "--epochs", "1", "--quiet", "--out", join(mnt, "p")]), /EROFS/);
      assertTypedFailure(await run(["convert", "--model", STORIES260K, "--to", "onnx", "--out", join(mnt, "o")]), /EROFS/);
      assertTypedFailure(await run(["generate", "--prompt", "a", "--max-tokens", "1", "--threads", "1"], { ONEPASS_CACHE_DIR: mnt }), /graph cache .*EROFS/);
    });
    // EACCES: a folder the user (nobody) may not write to; root ignores permission bits, so run as nobody.
    const locked = join(dir, "locked");
    mkdirSync(locked, { mode: 0o755 });
    spawnSync("chmod", ["-R", "a+rX", dir]);
    // CAP_DAC_READ_SEARCH lets nobody read the checkout wherever it was cloned (a 0700 temp folder too) and
    // leaves write permission checks in force, which is what this case is about
    const r = spawnSync("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", process.execPath, CLI, "train", "--features", feats, "--probe", "pooling", "--epochs", "1", "--quiet", "--out", join(locked, "p")], { encoding: "utf8", timeout: 60_000 });
    assertTypedFailure(r, /EACCES: permission denied/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("10. special paths: a FIFO as --model or probe file fails at once; a cache dir under /proc fails fast", async () => {
  const dir = tempDir("rel-special");
  try {
    const fifo = join(dir, "model.gguf");
    assert.equal(spawnSync("mkfifo", [fifo]).status, 0);
    const t0 = Date.now();
    assertTypedFailure(await run(["inspect", "--model", fifo]), /FIFO/);
    assertTypedFailure(await run(["generate", "--model", fifo, "--prompt", "a"]), /FIFO/);
    const probe = join(dir, "probe");
    mkdirSync(probe);
    assert.equal(spawnSync("mkfifo", [join(probe, "probe.json")]).status, 0);
    assert.throws(() => loadProbe(probe), (e: unknown) => e instanceof ProbeError && /FIFO/.test(e.message));
    assertTypedFailure(await run(["generate", "--prompt", "a", "--max-tokens", "1"], { ONEPASS_CACHE_DIR: "/proc/onepass-x" }), /graph cache/);
    assert.ok(Date.now() - t0 < 30_000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("6. probe.json is validated against one schema; the weights must be exactly the kind's tensors and match the stored checksum", async () => {
  const dir = tempDir("rel-schema");
  try {
    const feats = join(dir, "feats");
    await syntheticCache(feats);
    const probe = join(dir, "p");
    assert.equal((await run(["train", "--features", feats, "--probe", "scoring", "--epochs", "1", "--quiet", "--out", probe])).status, 0);
    const json = join(probe, "probe.json");
    const good = JSON.parse(readFileSync(json, "utf8"));
    assert.match(good.weightsSha256, /^[0-9a-f]{64}$/);
    assert.equal(good.weightsSha256, createHash("sha256").update(readFileSync(join(probe, "weights.safetensors"))).digest("hex"));
    const edits: [string, (j: any) => void, RegExp][] = [
      ["threshold", (j) => { j.threshold = 1.5; }, /must be <= 1/],
      ["labelNames", (j) => { j.labelNames = ["neg", "neg"]; }, /duplicate/],
      ["tokenization.template", (j) => { j.tokenization.template = "jinja"; }, /must be one of "raw", "chat"/],
      ["tokenization.maxTokens", (j) => { j.tokenization.maxTokens = -5; }, /must/],
      ["tokenization", (j) => { j.tokenization = null; }, /must be object/],
      ["config.token", (j) => { j.config.token = "first"; }, /must be one of/],
      ["config.colour", (j) => { j.config.colour = 1; }, /unknown field/],
      ["scoring.token_gate", (j) => { j.config.kind = "pooling"; }, /not a parameter of a pooling probe/],
    ];
    for (const [field, edit, message] of edits) {
      const j = structuredClone(good);
      edit(j);
      writeFileSync(json, JSON.stringify(j));
      assert.throws(() => loadProbe(probe), (e: unknown) => e instanceof ProbeError && e.field === field && message.test(e.message), field);
      assertTypedFailure(await run(["eval", "--probe", probe, "--features", feats]), new RegExp(`field ${field.replace(/\./g, "\\.")}`));
    }
    writeFileSync(json, JSON.stringify(good));
    const w = join(probe, "weights.safetensors");
    const bytes = readFileSync(w);
    bytes[bytes.length - 1] ^= 1; // one bit of one weight
    writeFileSync(w, bytes);
    assert.throws(() => loadProbe(probe), (e: unknown) => e instanceof ProbeError && e.field === "weightsSha256");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("7. eval and train --val-features compare tokenisation; train refuses flags that do not apply", async () => {
  const dir = tempDir("rel-mismatch");
  try {
    const feats = join(dir, "feats"), chat = join(dir, "chat");
    await syntheticCache(feats);
    await syntheticCache(chat, 40, 4, ["neg", "pos"], "chat");
    const probe = join(dir, "p");
    const base = ["train", "--features", feats, "--epochs", "1", "--quiet"];
    assert.equal((await run([...base, "--probe", "pooling", "--out", probe])).status, 0);
    assertTypedFailure(await run(["eval", "--probe", probe, "--features", chat]), /field tokenization: .*template 'chat'/);
    assertTypedFailure(await run([...base, "--probe", "pooling", "--val-features", chat, "--out", join(dir, "q")]), /field tokenization: .*template 'chat'/);
    assertTypedFailure(await run([...base, "--probe", "pooling", "--val-features", feats, "--out", join(dir, "q")]), /--val-features: is the training cache/);
    assertTypedFailure(await run([...base, "--probe", "pooling", "--metric", "accuracy", "--target-fpr", "0.1", "--out", join(dir, "q")]), /--target-fpr: .*selects on accuracy/);
    assertTypedFailure(await run([...base, "--probe", "scoring", "--pool", "max", "--out", join(dir, "q")]), /--pool: applies to pooling and mha probes, not scoring/);
    assertTypedFailure(await run([...base, "--probe", "pooling", "--heads", "2", "--out", join(dir, "q")]), /--heads: applies to mha/);
    assertTypedFailure(await run([...base, "--probe", "pooling", "--class-weights", "0,0", "--out", join(dir, "q")]), /class weights must be .*not all 0/);
    assert.equal(existsSync(join(dir, "q")), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("8. CLI text: --stop escapes, flag names in range errors, same-named probes, bounded --threads", async () => {
  assert.equal(unescapeFlag("\\n\\n"), "\n\n");
  assert.equal(unescapeFlag("a\\tb\\\\n\\x2e\\u00e9\\q"), "a\tb\\n.é\\q");
  const env = { ONEPASS_CACHE_DIR: tempDir("rel-cli-cache") };
  try {
    const base = ["generate", "--prompt", "Once upon a time", "--temperature", "0", "--threads", "1"];
    const full = await run([...base, "--max-tokens", "40"], env);
    assert.equal(full.status, 0, full.stderr);
    const cut = full.stdout.indexOf(".");
    assert.ok(cut > 0, full.stdout);
    const stopped = await run([...base, "--max-tokens", "40", "--stop", "\\x2e"], env); // an escaped "."
    assert.equal(stopped.status, 0, stopped.stderr);
    assert.equal(stopped.stdout.replace(/\n$/, ""), full.stdout.slice(0, cut));
    assertTypedFailure(await run([...base, "--max-tokens", "4000"], env), /\+ --max-tokens \(4000\) = \d+ exceeds the context window/);
    assertTypedFailure(await run([...base, "--top-p", "0"], env), /--top-p: expects a number in \(0, 1\]/);
    assertTypedFailure(await run([...base, "--threads", "1000"], env), new RegExp(`--threads: expects an integer in \\[1, ${availableParallelism()}\\]`));
    // Two probes with the same folder name are named by their paths.
    const dir = tempDir("rel-names");
    try {
      const feats = join(dir, "feats");
      await syntheticCache(feats);
      const probes = [join(dir, "a", "p"), join(dir, "b", "p")];
      for (const p of probes) {
        const r = await run(["train", "--features", feats, "--probe", "pooling", "--epochs", "1", "--quiet", "--out", p]);
        assert.equal(r.status, 0, r.stderr);
      }
      // The synthetic probes come from another "model": the error must be the fingerprint, not the duplicate name.
      const r = await run([...base, "--max-tokens", "1", "--probe", probes[0], "--probe", probes[1]], env);
      assertTypedFailure(r, /model\.fingerprint/);
      assert.doesNotMatch(r.stderr, /name them with a record/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    rmSync(env.ONEPASS_CACHE_DIR, { recursive: true, force: true });
  }
});

test("9. library: a stalled consumer releases the engine after stallTimeoutMs; bad stop / eosTokenIds / seed are typed errors", async () => {
  const cacheDir = tempDir("rel-lib-cache");
  const engine = await Engine.load(STORIES260K, { threads: 1, cacheDir });
  try {
    const stalled = engine.generate({ prompt: "Once upon a time", maxTokens: 50, temperature: 0, stallTimeoutMs: 200 });
    const it = stalled[Symbol.asyncIterator]();
    const first = await it.next(); // then never pulls again and never calls return()
    assert.equal(first.done, false);
    const t0 = Date.now();
    const next = await engine.generate({ prompt: "Once", maxTokens: 3, temperature: 0 }).result;
    assert.equal(next.finishReason, "length");
    assert.ok(Date.now() - t0 < 10_000);
    const r = await stalled.result;
    assert.equal(r.finishReason, "abort");
    assert.equal((await it.next()).done, true);
    for (const [field, bad] of [["stop", { stop: 5 }], ["eosTokenIds", { eosTokenIds: "2" }], ["seed", { seed: 1.5 }], ["stallTimeoutMs", { stallTimeoutMs: -1 }]] as const) {
      assert.throws(() => engine.generate({ prompt: "a", ...(bad as object) }), (e: unknown) => e instanceof InvalidArgumentError && e.field === field, field);
    }
  } finally {
    await engine.dispose(); // would hang for ever on today's code
    rmSync(cacheDir, { recursive: true, force: true });
  }
});
