/**
 * On-disk feature cache: the model runs once per example, probes train many times.
 *
 * READER API (for probe training)
 *   const cache = openFeatureCache(dir);            // throws FeatureCacheError if missing/corrupt/incomplete
 *   cache.manifest                                  // model fingerprint, L+1, d, tokenisation, dataset, mode
 *   cache.size                                      // N examples, in dataset order
 *   cache.labels                                    // Int32Array [N] label ids
 *   cache.labelNames                                // id → name
 *   cache.tokens(i)                                 // prompt length T_i (after truncation)
 *   cache.get(i)                                    // HiddenStates fp32:
 *                                                   //   mode "full":    [L+1, T_i, d]
 *                                                   //   mode "summary": [L+1, 2, d], token 0 = mean over
 *                                                   //                   the T_i tokens, token 1 = max
 *   for (const b of cache.batches(64, order?)) {}   // { indices, labels: Int32Array [B], hidden: HiddenStates[] }
 *   cache.close()
 * Reads are lazy. A cache whose shards all fit the budget keeps them whole in memory, read on first use; a
 * larger one is read per example (one positioned read each, left to the OS page cache), because random access
 * through a shard LRU smaller than the data would re-read a whole shard for almost every example. Each get()
 * decodes one example to fp32.
 *
 * ON DISK (dir/)
 *   manifest.json                     FeatureManifest (written atomically; `complete` set at the end)
 *   shard-00000.f16                   examples 0..S-1, each [rows, ...] fp16 little-endian, back to back
 *   shard-00000.idx.jsonl             one line per example: {"i","off" (bytes),"t" (tokens),"y" (label),"h" (text hash)}
 *   shard-0000K.f16.part / .idx.jsonl.part   the shard being written (append-only journal)
 *   lock                              pid of the writer
 * Crash safety: an example's bytes are appended to the data journal before its index line; on resume the
 * index journal is the truth (a torn last line is dropped, the data journal truncated to the last indexed
 * example), so after kill -9 nothing committed is lost and nothing is duplicated. A full shard is renamed
 * data first, index second; a data file without its final index is moved back to .part on resume.
 */
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { HiddenStates } from "../types/hidden.js";
import { FeatureCacheError, InvalidArgumentError, NonFiniteError } from "../errors.js";
import { TMP_SUFFIX, writeFileAtomic } from "../util/atomic.js";
import { fsError, makeDirs } from "../util/fs-errors.js";
import { datasetHash, type DatasetTask, type Example } from "./datasets.js";
import { decodeF16, encodeF16 } from "../numeric/half.js";

export type FeatureMode = "full" | "summary";

/** How texts became tokens: part of a cache's identity (a resume with other settings is refused). */
export interface TokenizationSettings {
  /** BOS prepended. */
  addBos: boolean;
  /** "raw": the text as is; "chat": wrapped in the model's chat template as a user message. */
  template: "raw" | "chat";
  /** Keep at most this many tokens (the first ones); null = no limit. With target "response": response tokens. */
  maxTokens: number | null;
  /**
   * "response": each example is prompt + response in one pass and only the response tokens' states are stored
   * (the response-token mask applied at extraction), as a response probe sees them while the answer streams.
   * Absent: the prompt (text) itself.
   */
  target?: "response";
}

/**
 * How two tokenisations differ ("template 'chat' vs 'raw'", ...), `a` and `b` named by `names`; a field
 * absent from `b` is not compared. Shared by every path that puts a probe or a cache next to another one:
 * eval, train --val-features, classify and generate.
 */
export function tokenizationDifferences(a: TokenizationSettings, b: Partial<TokenizationSettings>, names: [string, string]): string[] {
  const out: string[] = [];
  if (b.template !== undefined && a.template !== b.template) out.push(`${names[1]} used template '${b.template}', ${names[0]} '${a.template}'`);
  if (b.addBos !== undefined && a.addBos !== b.addBos) out.push(`${names[1]} ${b.addBos ? "starts" : "does not start"} with BOS, ${names[0]} ${a.addBos ? "did" : "did not"}`);
  if (b.maxTokens !== undefined && a.maxTokens !== b.maxTokens) out.push(`${names[1]} kept ${b.maxTokens ?? "all"} tokens, ${names[0]} ${a.maxTokens ?? "all"}`);
  return out;
}

/** Where hidden states come from: the engine (engineSource in source.ts) or a test double. */
export interface HiddenStateSource {
  /** Identity of the weights (LoadedModel.fingerprint). */
  readonly fingerprint: string;
  readonly modelName?: string;
  /** L + 1. */
  readonly layers: number;
  /** d. */
  readonly dim: number;
  /** BOS / template settings the source applies (maxTokens comes from the extraction options). */
  readonly tokenization: Omit<TokenizationSettings, "maxTokens">;
  /** Token count of a text under these settings (used for the size estimate), when cheap. */
  countTokens?(text: string): number;
  /**
   * Hidden states [L+1, T, d] of the text. The source may stop at maxTokens; if it returns more, the
   * extractor keeps the first maxTokens (exact for a causal model: later tokens do not change earlier states).
   */
  hidden(text: string, options: { maxTokens?: number; response?: string }): Promise<HiddenStates>;
}

export interface FeatureManifest {
  format: "onepass-features";
  version: 1;
  model: { fingerprint: string; name?: string; layers: number; dim: number };
  tokenization: TokenizationSettings;
  /** `task`: the preset's task kind when known (train picks its default selection metric from it). */
  dataset: { name: string; split?: string; task?: DatasetTask; files: string[]; textField?: string; labelField?: string; count: number; hash: string };
  labelNames: string[];
  mode: FeatureMode;
  dtype: "f16";
  shardSize: number;
  /** True once every example is stored. */
  complete: boolean;
  createdAt: string;
}

export interface IndexEntry {
  /** Example index. */
  i: number;
  /** Byte offset in the shard file. */
  off: number;
  /** Tokens of the example (after truncation). */
  t: number;
  /** Label id. */
  y: number;
  /** First 16 hex of sha256(text). */
  h: string;
}

export interface ExtractProgress {
  /** Examples stored so far (including those found from an earlier run). */
  done: number;
  total: number;
  /** Examples that were already stored when this run started. */
  resumed: number;
  /** Tokens processed by this run. */
  tokens: number;
  bytes: number;
}

export interface ExtractOptions {
  source: HiddenStateSource;
  examples: readonly Example[];
  labelNames: readonly string[];
  /** Dataset identity recorded in the manifest. */
  dataset?: { name: string; split?: string; task?: DatasetTask; files?: string[]; textField?: string; labelField?: string };
  outDir: string;
  mode?: FeatureMode;
  /** Examples per shard file (default 256). */
  shardSize?: number;
  maxTokens?: number;
  /** "response": store the states of each example's response tokens (after its prompt) instead of the text's. */
  target?: "prompt" | "response";
  onProgress?: (p: ExtractProgress) => void;
  /** Stop cleanly after the current example (the cache stays resumable). */
  signal?: AbortSignal;
}

export interface ExtractResult {
  dir: string;
  count: number;
  /** Examples already present when this run started. */
  resumedFrom: number;
  /** Examples computed by this run. */
  computed: number;
  /** Bytes of feature data on disk. */
  bytes: number;
  complete: boolean;
}

export interface SizeEstimate {
  examples: number;
  /** Mean tokens per example (measured with countTokens on a sample, else ≈ chars / 4). */
  avgTokens: number;
  measured: boolean;
  /** ≈ N × avg T × (L+1) × d × 2 (full) or N × 2 × (L+1) × d × 2 (summary). */
  bytes: number;
}

const MANIFEST = "manifest.json";
const LOCK = "lock";
const PART = ".part";
const shardBase = (k: number) => `shard-${String(k).padStart(5, "0")}`;
const dataName = (k: number) => `${shardBase(k)}.f16`;
const indexName = (k: number) => `${shardBase(k)}.idx.jsonl`;

/** The identity of an example in the cache: its text, and its response when the target is the response. */
function exampleHash(ex: Example, target: TokenizationSettings["target"]): string {
  return target === "response" ? textHash(`${ex.text}\u0000${ex.response ?? ""}`) : textHash(ex.text);
}

export function textHash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

/** Rows stored per layer for an example of T tokens. */
function rowsFor(mode: FeatureMode, tokens: number): number {
  return mode === "full" ? tokens : 2;
}

/** Size estimate printed before an extraction starts. */
export function estimateFeatureBytes(options: Pick<ExtractOptions, "source" | "examples" | "mode" | "maxTokens">, sample = 200): SizeEstimate {
  const { source, examples } = options;
  const n = examples.length;
  const mode = options.mode ?? "full";
  let avg = 0;
  let measured = false;
  if (n > 0) {
    const k = Math.min(n, sample);
    let sum = 0;
    for (let j = 0; j < k; j++) {
      const text = examples[Math.floor((j * n) / k)].text;
      let t = source.countTokens !== undefined ? source.countTokens(text) : Math.ceil(text.length / 4) + (source.tokenization.addBos ? 1 : 0);
      if (options.maxTokens !== undefined) t = Math.min(t, options.maxTokens);
      sum += t;
    }
    avg = sum / k;
    measured = source.countTokens !== undefined;
  }
  const rows = rowsFor(mode, avg);
  return { examples: n, avgTokens: avg, measured, bytes: Math.round(n * rows * source.layers * source.dim * 2) };
}

function buildManifest(options: ExtractOptions): FeatureManifest {
  const { source } = options;
  const shardSize = options.shardSize ?? 256;
  if (!Number.isInteger(shardSize) || shardSize < 1) throw new InvalidArgumentError("shardSize must be a positive integer", { field: "shardSize" });
  if (options.maxTokens !== undefined && (!Number.isInteger(options.maxTokens) || options.maxTokens < 1)) {
    throw new InvalidArgumentError("maxTokens must be a positive integer", { field: "maxTokens" });
  }
  return {
    format: "onepass-features",
    version: 1,
    model: { fingerprint: source.fingerprint, ...(source.modelName !== undefined ? { name: source.modelName } : {}), layers: source.layers, dim: source.dim },
    tokenization: {
      addBos: source.tokenization.addBos, template: source.tokenization.template, maxTokens: options.maxTokens ?? null,
      ...(options.target === "response" ? { target: "response" as const } : {}),
    },
    dataset: {
      name: options.dataset?.name ?? "examples",
      ...(options.dataset?.split !== undefined ? { split: options.dataset.split } : {}),
      ...(options.dataset?.task !== undefined ? { task: options.dataset.task } : {}),
      files: options.dataset?.files ?? [],
      ...(options.dataset?.textField !== undefined ? { textField: options.dataset.textField } : {}),
      ...(options.dataset?.labelField !== undefined ? { labelField: options.dataset.labelField } : {}),
      count: options.examples.length,
      hash: datasetHash(options.examples),
    },
    labelNames: [...options.labelNames],
    mode: options.mode ?? "full",
    dtype: "f16",
    shardSize,
    complete: false,
    createdAt: new Date().toISOString(),
  };
}

/** The settings that must agree for a resume; returns the first differing field. */
function manifestMismatch(old: FeatureManifest, want: FeatureManifest): { field: string; was: unknown; now: unknown } | undefined {
  const pairs: [string, unknown, unknown][] = [
    ["model.fingerprint", old.model?.fingerprint, want.model.fingerprint],
    ["model.layers", old.model?.layers, want.model.layers],
    ["model.dim", old.model?.dim, want.model.dim],
    ["tokenization.addBos", old.tokenization?.addBos, want.tokenization.addBos],
    ["tokenization.template", old.tokenization?.template, want.tokenization.template],
    ["tokenization.maxTokens", old.tokenization?.maxTokens, want.tokenization.maxTokens],
    ["tokenization.target", old.tokenization?.target ?? "prompt", want.tokenization.target ?? "prompt"],
    ["mode", old.mode, want.mode],
    ["dtype", old.dtype, want.dtype],
    ["shardSize", old.shardSize, want.shardSize],
    ["dataset.count", old.dataset?.count, want.dataset.count],
    ["dataset.hash", old.dataset?.hash, want.dataset.hash],
    ["labelNames", JSON.stringify(old.labelNames), JSON.stringify(want.labelNames)],
  ];
  for (const [field, was, now] of pairs) if (was !== now) return { field, was, now };
  return undefined;
}

function readManifest(dir: string): FeatureManifest {
  const path = join(dir, MANIFEST);
  let m: FeatureManifest;
  try {
    m = JSON.parse(readFileSync(path, "utf8")) as FeatureManifest;
  } catch (err) {
    throw new FeatureCacheError(`cannot read manifest: ${(err as Error).message}`, { file: path }, { cause: err });
  }
  if (m === null || typeof m !== "object" || m.format !== "onepass-features") throw new FeatureCacheError("not a onepass feature cache manifest", { file: path, field: "format" });
  if (m.version !== 1) throw new FeatureCacheError(`unsupported version ${String(m.version)}`, { file: path, field: "version" });
  const intField = (v: unknown, field: string) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new FeatureCacheError(`expected a positive integer, got ${JSON.stringify(v)}`, { file: path, field });
  };
  intField(m.model?.layers, "model.layers");
  intField(m.model?.dim, "model.dim");
  intField(m.shardSize, "shardSize");
  if (typeof m.dataset?.count !== "number" || m.dataset.count < 0) throw new FeatureCacheError("missing dataset.count", { file: path, field: "dataset.count" });
  if (m.mode !== "full" && m.mode !== "summary") throw new FeatureCacheError(`unknown mode ${JSON.stringify(m.mode)}`, { file: path, field: "mode" });
  if (m.dtype !== "f16") throw new FeatureCacheError(`unknown dtype ${JSON.stringify(m.dtype)}`, { file: path, field: "dtype" });
  if (!Array.isArray(m.labelNames)) throw new FeatureCacheError("missing labelNames", { file: path, field: "labelNames" });
  return m;
}

/** Parse index lines; stops at the first torn/invalid line when `lenient` (a journal), else throws. */
function parseIndex(
  path: string,
  text: string,
  m: FeatureManifest,
  firstIndex: number,
  dataBytes: number,
  lenient: boolean,
): { entries: IndexEntry[]; validChars: number; dataEnd: number } {
  const entries: IndexEntry[] = [];
  let pos = 0;
  let off = 0;
  const rowBytes = m.model.layers * m.model.dim * 2;
  while (pos < text.length) {
    const nl = text.indexOf("\n", pos);
    const fail = (why: string): never => {
      throw new FeatureCacheError(`line ${entries.length + 1}: ${why}`, { file: path, offset: pos });
    };
    if (nl < 0) {
      if (lenient) break; // torn last line
      fail("truncated line");
    }
    let e: IndexEntry | undefined;
    try {
      e = JSON.parse(text.slice(pos, nl)) as IndexEntry;
    } catch {
      if (lenient) break;
      fail("invalid JSON");
    }
    const ok =
      e !== undefined &&
      e.i === firstIndex + entries.length &&
      e.off === off &&
      Number.isInteger(e.t) &&
      e.t >= 1 &&
      Number.isInteger(e.y) &&
      typeof e.h === "string";
    if (!ok) {
      if (lenient) break;
      fail(`bad entry (expected example ${firstIndex + entries.length} at byte ${off})`);
    }
    const size = rowsFor(m.mode, e!.t) * rowBytes;
    if (off + size > dataBytes) {
      if (lenient) break;
      fail(`example ${e!.i} runs past the end of the shard data (${dataBytes} bytes)`);
    }
    entries.push(e!);
    off += size;
    pos = nl + 1;
  }
  return { entries, validChars: pos, dataEnd: off };
}

/** The index of finalised shard k (strict: any bad line throws), checked to cover its data file exactly. */
function readSealedShard(dir: string, k: number, m: FeatureManifest, firstIndex: number): { entries: IndexEntry[]; dataBytes: number } {
  const data = join(dir, dataName(k));
  const dataBytes = statSync(data).size;
  const parsed = parseIndex(join(dir, indexName(k)), readFileSync(join(dir, indexName(k)), "utf8"), m, firstIndex, dataBytes, false);
  if (parsed.dataEnd !== dataBytes) throw new FeatureCacheError(`shard data has ${dataBytes} bytes, index covers ${parsed.dataEnd}`, { file: data });
  return { entries: parsed.entries, dataBytes };
}

function removeIfExists(path: string): void {
  if (existsSync(path)) unlinkSync(path);
}

function acquireLock(dir: string): void {
  const path = join(dir, LOCK);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number(readFileSync(path, "utf8").trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
        throw new FeatureCacheError(`another process (pid ${pid}) is writing this cache`, { file: path });
      }
      unlinkSync(path); // stale lock from a killed run
    }
  }
  throw new FeatureCacheError("cannot take the cache lock", { file: path });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Bring a cache dir back to a consistent state after a crash: drop temp files, re-open a shard whose data
 * was finalised without its index, trim the journal to whole examples. Returns the entries stored so far.
 */
function recover(dir: string, m: FeatureManifest): IndexEntry[] {
  for (const name of readdirSync(dir)) if (name.endsWith(TMP_SUFFIX)) unlinkSync(join(dir, name));
  const entries: IndexEntry[] = [];
  let k = 0;
  for (; ; k++) {
    const data = join(dir, dataName(k));
    const index = join(dir, indexName(k));
    if (!(existsSync(data) && existsSync(index))) break;
    entries.push(...readSealedShard(dir, k, m, entries.length).entries);
  }
  // Shard k is the one in progress (if any).
  const data = join(dir, dataName(k));
  const dataPart = data + PART;
  const indexPart = join(dir, indexName(k)) + PART;
  if (existsSync(data)) renameSync(data, dataPart); // killed between the two finalising renames
  if (existsSync(dataPart) || existsSync(indexPart)) {
    if (!existsSync(dataPart)) closeSync(openSync(dataPart, "w"));
    if (!existsSync(indexPart)) closeSync(openSync(indexPart, "w"));
    const size = statSync(dataPart).size;
    const text = readFileSync(indexPart, "utf8");
    const parsed = parseIndex(indexPart, text, m, entries.length, size, true);
    truncateFile(dataPart, parsed.dataEnd);
    truncateFile(indexPart, Buffer.byteLength(text.slice(0, parsed.validChars), "utf8"));
    entries.push(...parsed.entries);
    // Killed after the shard's last example but before its renames: finalise it now.
    const full = parsed.entries.length === m.shardSize || (parsed.entries.length > 0 && entries.length === m.dataset.count);
    if (full) finishShardFiles(dir, k);
  }
  // Nothing may exist beyond the shard in progress.
  for (const name of readdirSync(dir)) {
    const match = /^shard-(\d{5})\./.exec(name);
    if (match !== null && Number(match[1]) > k) unlinkSync(join(dir, name));
  }
  return entries;
}

function truncateFile(path: string, bytes: number): void {
  const fd = openSync(path, "r+");
  try {
    ftruncateSync(fd, bytes);
  } finally {
    closeSync(fd);
  }
}

/** Per-layer mean and max over tokens: [L+1, 2, d]. */
export function summarize(h: HiddenStates): HiddenStates {
  const { layers, tokens, dim } = h;
  const out = new Float32Array(layers * 2 * dim); // [L+1, 2, d]
  for (let l = 0; l < layers; l++) {
    const mean = out.subarray(l * 2 * dim, l * 2 * dim + dim); // [d]
    const max = out.subarray(l * 2 * dim + dim, (l + 1) * 2 * dim); // [d]
    max.fill(-Infinity);
    for (let t = 0; t < tokens; t++) {
      const row = h.token(l, t); // [d]
      for (let j = 0; j < dim; j++) {
        mean[j] += row[j];
        if (row[j] > max[j]) max[j] = row[j];
      }
    }
    for (let j = 0; j < dim; j++) mean[j] /= tokens;
  }
  return new HiddenStates(layers, 2, dim, out);
}

/**
 * Run the source once per example and store the hidden states (fp16, sharded). Resumes an interrupted run
 * in the same dir; refuses (FeatureCacheError) a dir made by another model, dataset or settings.
 */
export async function extractFeatures(options: ExtractOptions): Promise<ExtractResult> {
  try {
    return await extractFeaturesInner(options);
  } catch (err) {
    // EACCES, EROFS, ENOSPC, ENOTDIR...: one typed line naming the cache folder (the cache stays resumable).
    throw fsError(err, options.outDir, "write the feature cache");
  }
}

async function extractFeaturesInner(options: ExtractOptions): Promise<ExtractResult> {
  const { source, examples, outDir } = options;
  const want = buildManifest(options);
  for (const [i, e] of examples.entries()) {
    if (!Number.isInteger(e.label) || e.label < 0 || e.label >= want.labelNames.length) {
      throw new InvalidArgumentError(`example ${i}: label ${e.label} outside 0..${want.labelNames.length - 1}`, { field: "label" });
    }
  }
  makeDirs(outDir);
  const manifestPath = join(outDir, MANIFEST);
  acquireLock(outDir);
  try {
    let manifest: FeatureManifest;
    let entries: IndexEntry[] = [];
    if (existsSync(manifestPath)) {
      manifest = readManifest(outDir);
      const diff = manifestMismatch(manifest, want);
      if (diff !== undefined) {
        throw new FeatureCacheError(
          `cache was made with ${diff.field} = ${JSON.stringify(diff.was)}, this run has ${JSON.stringify(diff.now)}; use another --out dir`,
          { file: manifestPath, field: diff.field },
        );
      }
      entries = recover(outDir, manifest);
      for (const e of entries) {
        if (e.h !== exampleHash(examples[e.i], manifest.tokenization.target) || e.y !== examples[e.i].label) {
          throw new FeatureCacheError(`example ${e.i} in the cache does not match the dataset`, { file: outDir, field: "h" });
        }
      }
    } else {
      const stray = readdirSync(outDir).filter((n) => n !== LOCK);
      if (stray.length > 0) throw new FeatureCacheError(`directory is not empty and has no ${MANIFEST} (found ${stray[0]})`, { file: outDir });
      manifest = want;
      writeFileAtomic(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
    }

    const total = examples.length;
    const resumed = entries.length;
    const rowBytes = manifest.model.layers * manifest.model.dim * 2;
    let bytes = entries.reduce((s, e) => s + rowsFor(manifest.mode, e.t) * rowBytes, 0);
    let tokens = 0;
    let next = resumed;
    const S = manifest.shardSize;

    // The shard in progress: journal files opened for append.
    let shard = Math.floor(next / S);
    let shardOffset = entries.filter((e) => Math.floor(e.i / S) === shard).reduce((s, e) => s + rowsFor(manifest.mode, e.t) * rowBytes, 0);
    let fdData = -1;
    let fdIndex = -1;
    const openShard = () => {
      fdData = openSync(join(outDir, dataName(shard)) + PART, "a");
      fdIndex = openSync(join(outDir, indexName(shard)) + PART, "a");
    };
    const finishShard = () => {
      fsyncSync(fdData);
      fsyncSync(fdIndex);
      closeSync(fdData);
      closeSync(fdIndex);
      fdData = fdIndex = -1;
      finishShardFiles(outDir, shard);
    };

    options.onProgress?.({ done: next, total, resumed, tokens, bytes });
    try {
      while (next < total && options.signal?.aborted !== true) {
        if (fdData < 0) openShard();
        const ex = examples[next];
        const response = manifest.tokenization.target === "response" ? ex.response : undefined;
        if (manifest.tokenization.target === "response" && (typeof response !== "string" || response.length === 0)) {
          throw new InvalidArgumentError(`example ${next} has no response (target response needs prompt + response data, e.g. --data beavertails-response)`, { field: "response", offset: next });
        }
        let h = await source.hidden(ex.text, { maxTokens: options.maxTokens, ...(response !== undefined ? { response } : {}) });
        if (h.layers !== manifest.model.layers || h.dim !== manifest.model.dim) {
          throw new FeatureCacheError(`source returned [${h.layers}, ${h.tokens}, ${h.dim}], expected [${manifest.model.layers}, T, ${manifest.model.dim}]`, { field: `example ${next}` });
        }
        if (h.tokens < 1) throw new FeatureCacheError("source returned no tokens", { field: `example ${next}` });
        if (options.maxTokens !== undefined && h.tokens > options.maxTokens) h = h.sliceTokens(0, options.maxTokens);
        const stored = manifest.mode === "full" ? h : summarize(h);
        const half = encodeF16(stored.data); // [rows * layers * dim]
        checkFiniteF16(half, stored, next);
        const buf = Buffer.from(half.buffer, half.byteOffset, half.byteLength); // little-endian on every Node platform we run on
        writeAll(fdData, buf);
        const entry: IndexEntry = { i: next, off: shardOffset, t: h.tokens, y: ex.label, h: exampleHash(ex, manifest.tokenization.target) };
        writeAll(fdIndex, Buffer.from(JSON.stringify(entry) + "\n", "utf8"));
        shardOffset += buf.length;
        bytes += buf.length;
        tokens += h.tokens;
        next++;
        if (next % S === 0 || next === total) {
          finishShard();
          shard++;
          shardOffset = 0;
        }
        options.onProgress?.({ done: next, total, resumed, tokens, bytes });
      }
    } finally {
      if (fdData >= 0) {
        closeSync(fdData);
        closeSync(fdIndex);
      }
    }
    if (next === total && !manifest.complete) {
      // A resumed run killed after its last shard but before this update lands here too (recover finalised it).
      manifest = { ...manifest, complete: true };
      writeFileAtomic(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
    }
    return { dir: outDir, count: next, resumedFrom: resumed, computed: next - resumed, bytes, complete: next === total };
  } finally {
    removeIfExists(join(outDir, LOCK));
  }
}

/**
 * Stored features must be finite: NaN from the model, or values past fp16's range (|x| > 65504 become ±Inf
 * when stored), would train a probe on garbage. Exponent bits all ones = Inf or NaN in f16.
 */
function checkFiniteF16(half: Uint16Array, stored: HiddenStates, example: number): void {
  for (let i = 0; i < half.length; i++) {
    if ((half[i] & 0x7c00) === 0x7c00) {
      const v = stored.data[i];
      const layer = Math.floor(i / (stored.tokens * stored.dim));
      const what = Number.isFinite(v) ? `${v} overflows fp16 (|x| > 65504)` : `is ${v}`;
      throw new NonFiniteError(`example ${example}: hidden state value at layer ${layer} ${what}; the model's weights hold NaN/Inf values or its activations overflow`, { field: `example ${example}` });
    }
  }
}

function finishShardFiles(dir: string, k: number): void {
  renameSync(join(dir, dataName(k)) + PART, join(dir, dataName(k)));
  renameSync(join(dir, indexName(k)) + PART, join(dir, indexName(k)));
}

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

// ---------------------------------------------------------------------------------------------------------
// Reader

export interface FeatureBatch {
  indices: number[];
  /** [B] */
  labels: Int32Array;
  /** B hidden-state tensors (full: [L+1, T_i, d]; summary: [L+1, 2, d]). */
  hidden: HiddenStates[];
}

export interface FeatureCache {
  readonly dir: string;
  readonly manifest: FeatureManifest;
  readonly size: number;
  /** [N] label ids. */
  readonly labels: Int32Array;
  readonly labelNames: string[];
  /** Tokens of example i (after truncation). */
  tokens(i: number): number;
  get(i: number): HiddenStates;
  /** Batches in `order` (default 0..N-1). */
  batches(batchSize: number, order?: readonly number[]): Generator<FeatureBatch>;
  close(): void;
}

export interface OpenOptions {
  /** Budget for raw shard bytes kept in memory (default 256 MiB): a cache larger than this is read per example. */
  cacheBytes?: number;
}

/** Open a complete feature cache for reading (see the top of this file). */
export function openFeatureCache(dir: string, options: OpenOptions = {}): FeatureCache {
  if (!existsSync(join(dir, MANIFEST))) throw new FeatureCacheError(`no ${MANIFEST}: not a feature cache`, { file: dir });
  const manifest = readManifest(dir);
  const entries: IndexEntry[] = [];
  const shardSizes: number[] = [];
  for (let k = 0; ; k++) {
    const data = join(dir, dataName(k));
    const index = join(dir, indexName(k));
    if (!existsSync(index)) break;
    if (!existsSync(data)) throw new FeatureCacheError("shard index without its data file", { file: data });
    const parsed = readSealedShard(dir, k, manifest, entries.length);
    if (parsed.entries.length !== manifest.shardSize && entries.length + parsed.entries.length !== manifest.dataset.count) {
      throw new FeatureCacheError(`shard holds ${parsed.entries.length} examples, expected ${manifest.shardSize}`, { file: index });
    }
    entries.push(...parsed.entries);
    shardSizes.push(parsed.dataBytes);
  }
  if (!manifest.complete || entries.length !== manifest.dataset.count) {
    throw new FeatureCacheError(
      `cache is incomplete (${entries.length} of ${manifest.dataset.count} examples stored); run the extraction again to resume it`,
      { file: join(dir, MANIFEST), field: "complete" },
    );
  }
  for (const e of entries) {
    if (e.y < 0 || e.y >= manifest.labelNames.length) throw new FeatureCacheError(`example ${e.i}: label ${e.y} has no name`, { file: dir, field: "y" });
  }
  const labels = Int32Array.from(entries, (e) => e.y); // [N]
  // Whole shards in memory only when all of them fit the budget (see the top of this file); else per-example reads.
  const wholeShards = shardSizes.reduce((a, b) => a + b, 0) <= (options.cacheBytes ?? 256 * 2 ** 20);
  const shards = new Map<number, Buffer>(); // shard → raw bytes, read on first use
  const fds = new Map<number, number>();
  const { layers, dim } = manifest.model;

  const shardBytes = (k: number): Buffer | undefined => {
    if (!wholeShards) return undefined;
    let buf = shards.get(k);
    if (buf === undefined) {
      buf = readFileSync(join(dir, dataName(k)));
      shards.set(k, buf);
    }
    return buf;
  };

  const cache: FeatureCache = {
    dir,
    manifest,
    size: entries.length,
    labels,
    labelNames: [...manifest.labelNames],
    tokens(i) {
      return entryAt(i).t;
    },
    get(i) {
      const e = entryAt(i);
      const k = Math.floor(i / manifest.shardSize);
      const rows = rowsFor(manifest.mode, e.t);
      const n = layers * rows * dim;
      const half = new Uint16Array(n); // [L+1, rows, d]
      const bytes = new Uint8Array(half.buffer);
      const whole = shardBytes(k);
      if (whole !== undefined) {
        bytes.set(whole.subarray(e.off, e.off + n * 2));
      } else {
        let fd = fds.get(k);
        if (fd === undefined) {
          fd = openSync(join(dir, dataName(k)), "r");
          fds.set(k, fd);
        }
        let got = 0;
        while (got < bytes.length) {
          const r = readSync(fd, bytes, got, bytes.length - got, e.off + got);
          if (r === 0) throw new FeatureCacheError(`unexpected end of shard data reading example ${i}`, { file: join(dir, dataName(k)), offset: e.off + got });
          got += r;
        }
      }
      return new HiddenStates(layers, rows, dim, decodeF16(half));
    },
    *batches(batchSize, order) {
      if (!Number.isInteger(batchSize) || batchSize < 1) throw new InvalidArgumentError("batchSize must be a positive integer", { field: "batchSize" });
      const idx = order ?? Array.from({ length: entries.length }, (_, i) => i);
      for (let s = 0; s < idx.length; s += batchSize) {
        const indices = idx.slice(s, s + batchSize);
        yield { indices, labels: Int32Array.from(indices, (i) => labels[entryAt(i).i]), hidden: indices.map((i) => cache.get(i)) };
      }
    },
    close() {
      for (const fd of fds.values()) closeSync(fd);
      fds.clear();
      shards.clear();
    },
  };

  function entryAt(i: number): IndexEntry {
    if (!Number.isInteger(i) || i < 0 || i >= entries.length) throw new InvalidArgumentError(`example index ${i} outside 0..${entries.length - 1}`, { file: dir });
    return entries[i];
  }
  return cache;
}
