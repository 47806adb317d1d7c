/**
 * On-disk cache of built decoder graphs, keyed by the model fingerprint + build options + builder version.
 * An entry is a folder <key>/ with model.onnx, model.onnx.data and manifest.json (written last). Entries are
 * built in a temporary folder and renamed into place; an entry that fails validation (sizes, model sha256,
 * data digest) is rebuilt, never fatal.
 */
import { createHash } from "node:crypto";
import { isErrno, makeDirs } from "../util/fs-errors.js";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { LoadedModel } from "../model/spec.js";
import { GraphError } from "../errors.js";
import { DECODER_BUILDER_VERSION, TAP_LAYOUT, buildDecoderGraph, type DecoderBuildOptions, type ProgressCallback } from "./decoder.js";

/** The build options that shape the graph (the cache key); progress reporting is not one of them. */
type GraphShapeOptions = Required<Omit<DecoderBuildOptions, "onProgress" | "tapSummaries">> & { tapSummaries?: number };

export interface CachedGraph {
  /** Path of model.onnx (its weights in model.onnx.data next to it). */
  modelPath: string;
  /** True when the entry was already on disk and valid. */
  hit: boolean;
  /** The entry's folder. */
  dir: string;
}

interface Manifest {
  builderVersion: number;
  fingerprint: string;
  options: GraphShapeOptions;
  modelBytes: number;
  dataBytes: number;
  /** sha256 of model.onnx (small: the weights live in the data file). */
  modelSha256: string;
  /** Digest of model.onnx.data (see dataDigest). */
  dataDigest: string;
}

/** $ONEPASS_CACHE_DIR/graphs, else ~/.cache/onepass/graphs. */
export function defaultGraphCacheDir(): string {
  const root = process.env.ONEPASS_CACHE_DIR;
  return root !== undefined && root !== "" ? join(root, "graphs") : join(homedir(), ".cache", "onepass", "graphs");
}

function normalise(model: LoadedModel, o: DecoderBuildOptions): GraphShapeOptions {
  return {
    taps: o.taps ?? true,
    accuracyLevel: o.accuracyLevel ?? 4,
    int4: o.int4 ?? true,
    maxPositions: o.maxPositions ?? model.spec.contextLength,
    // only when set: graphs without summaries keep the keys (and cache entries) they had before the option
    ...((o.taps ?? true) && o.tapSummaries === true ? { tapSummaries: TAP_LAYOUT } : {}),
  };
}

export function graphCacheKey(model: LoadedModel, options: DecoderBuildOptions = {}): string {
  const opts = normalise(model, options);
  return createHash("sha256")
    .update(JSON.stringify({ v: DECODER_BUILDER_VERSION, fp: model.fingerprint, spec: model.spec, opts }))
    .digest("hex")
    .slice(0, 32);
}

/** sha256 of a file, read through one 4 MiB buffer: a whole-file read would add the file's size to peak RSS. */
function sha256File(path: string): string {
  const h = createHash("sha256");
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(4 << 20);
    for (let pos = 0; ; ) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

const FULL_HASH_LIMIT = 512 * 1024 * 1024;
const SAMPLE_BYTES = 1 << 20;
const SAMPLES = 64;

/** sha256 of the whole data file up to 512 MiB; above that, of 64 evenly spaced 1 MiB samples (bounded cost). */
function dataDigest(path: string): string {
  const size = statSync(path).size;
  if (size <= FULL_HASH_LIMIT) return "full:" + sha256File(path);
  const h = createHash("sha256");
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(SAMPLE_BYTES);
    for (let i = 0; i < SAMPLES; i++) {
      const pos = Math.floor(((size - SAMPLE_BYTES) * i) / (SAMPLES - 1));
      const n = readSync(fd, buf, 0, SAMPLE_BYTES, pos);
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return "sampled:" + h.digest("hex");
}

/** True when the entry's manifest matches the files next to it. */
function validEntry(dir: string): boolean {
  try {
    const m = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as Manifest;
    const model = join(dir, "model.onnx");
    return (
      m.builderVersion === DECODER_BUILDER_VERSION &&
      statSync(model).size === m.modelBytes &&
      statSync(model + ".data").size === m.dataBytes &&
      sha256File(model) === m.modelSha256 &&
      dataDigest(model + ".data") === m.dataDigest
    );
  } catch {
    return false;
  }
}

/**
 * The cached graph for (model, options), building it if absent or invalid. `rebuild: true` discards the
 * existing entry first (used when ORT rejects a cached file that passed validation). `onProgress` hears the
 * build (stage "building graph") only when there is one: a cache hit reports nothing.
 */
export function ensureDecoderGraph(
  model: LoadedModel,
  options: DecoderBuildOptions = {},
  cache: { cacheDir?: string; rebuild?: boolean; onProgress?: ProgressCallback } = {},
): CachedGraph {
  const root = cache.cacheDir ?? defaultGraphCacheDir();
  const key = graphCacheKey(model, options);
  const dir = join(root, key);
  const modelPath = join(dir, "model.onnx");
  if (cache.rebuild !== true && validEntry(dir)) return { modelPath, hit: true, dir };

  try {
    makeDirs(root);
  } catch (e) {
    throw new GraphError(`cannot create the graph cache folder (${(e as Error).message}): set ONEPASS_CACHE_DIR to a writable folder`, { file: root }, { cause: e });
  }
  const tmp = join(root, `${key}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    mkdirSync(tmp);
  } catch (e) {
    throw new GraphError(`cannot write to the graph cache (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): set ONEPASS_CACHE_DIR to a writable folder`, { file: root }, { cause: e });
  }
  try {
    const opts = normalise(model, options);
    const tmpModel = join(tmp, "model.onnx");
    buildDecoderGraph(model.spec, model.weights, tmpModel, { ...opts, tapSummaries: opts.tapSummaries !== undefined, onProgress: cache.onProgress ?? options.onProgress });
    const manifest: Manifest = {
      builderVersion: DECODER_BUILDER_VERSION,
      fingerprint: model.fingerprint,
      options: opts,
      modelBytes: statSync(tmpModel).size,
      dataBytes: statSync(tmpModel + ".data").size,
      modelSha256: sha256File(tmpModel),
      dataDigest: dataDigest(tmpModel + ".data"),
    };
    writeFileSync(join(tmp, "manifest.json"), JSON.stringify(manifest, null, 2));
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    try {
      renameSync(tmp, dir);
    } catch (e) {
      // another process may have renamed a complete entry into place meanwhile
      if (!validEntry(dir)) throw e;
    }
  } catch (e) {
    if (isErrno(e)) throw new GraphError(`cannot write to the graph cache (${e.code}): free some space or set ONEPASS_CACHE_DIR to a writable folder`, { file: root }, { cause: e });
    throw e;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return { modelPath, hit: false, dir };
}
