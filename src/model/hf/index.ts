/**
 * Hugging Face model folders: config.json + model.safetensors (or shards listed in
 * model.safetensors.index.json) + tokenizer files. `loadHfFolder(dir)` gives the same LoadedModel the GGUF
 * loader gives: a ModelSpec and a lazy WeightSource under canonical (GGUF-style) tensor names.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { fingerprintFile } from "../fingerprint.js";
import { ModelFormatError, UnsupportedModelError } from "../../errors.js";
import type { LoadedModel, ModelSpec, TensorInfo, WeightSource } from "../spec.js";
import { TensorNames } from "../spec.js";
import { openSafetensors, SAFETENSORS_FLOAT_STORAGE, type SafetensorsFile } from "../safetensors.js";
import { tableWeightSource } from "../weight-source.js";
import { parseHfConfig } from "./config.js";
import { canonicalToHf, hfToCanonical, isIgnorableHfTensor } from "./names.js";

export { parseHfConfig, specToHfConfig, HF_ARCHITECTURES } from "./config.js";
export { hfToCanonical, canonicalToHf } from "./names.js";

type Json = Record<string, unknown>;

/** Reads and parses a JSON file; undefined when it does not exist and `optional`. */
export function readJsonFile(path: string, optional: true): Json | undefined;
export function readJsonFile(path: string, optional?: false): Json;
export function readJsonFile(path: string, optional = false): Json | undefined {
  if (!existsSync(path)) {
    if (optional) return undefined;
    throw new ModelFormatError("file is missing", { file: path });
  }
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new ModelFormatError(`not valid JSON: ${(err as Error).message}`, { file: path }, { cause: err });
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new ModelFormatError("expected a JSON object", { file: path });
  return value as Json;
}

interface TensorLocation {
  file: SafetensorsFile;
  hfName: string;
  info: TensorInfo;
}

/** The safetensors files of a folder, opened lazily (headers only), with the file each tensor lives in. */
function openShards(dir: string): { files: SafetensorsFile[]; where: Map<string, SafetensorsFile> } {
  const single = join(dir, "model.safetensors");
  const indexPath = join(dir, "model.safetensors.index.json");
  const files: SafetensorsFile[] = [];
  const where = new Map<string, SafetensorsFile>(); // HF name → file
  try {
    if (existsSync(indexPath)) {
      const index = readJsonFile(indexPath);
      const map = index.weight_map;
      if (map === null || typeof map !== "object" || Array.isArray(map)) {
        throw new ModelFormatError("expected an object mapping tensor names to shard files", { file: indexPath, field: "weight_map" });
      }
      const byShard = new Map<string, SafetensorsFile>();
      for (const [hfName, shard] of Object.entries(map as Json)) {
        if (typeof shard !== "string" || shard.includes("/") || shard.includes("\\")) {
          throw new ModelFormatError(`expected a shard file name, got ${JSON.stringify(shard)}`, { file: indexPath, field: `weight_map.${hfName}` });
        }
        let file = byShard.get(shard);
        if (file === undefined) {
          const shardPath = join(dir, shard);
          if (!existsSync(shardPath)) {
            throw new ModelFormatError(`shard ${shard} does not exist in ${dir}`, { file: indexPath, field: `weight_map.${hfName}` });
          }
          file = openSafetensors(shardPath);
          files.push(file);
          byShard.set(shard, file);
        }
        if (!file.has(hfName)) {
          throw new ModelFormatError(`tensor ${hfName} is listed in ${indexPath} but not stored in this shard`, { file: file.path, field: hfName });
        }
        where.set(hfName, file);
      }
    } else if (existsSync(single)) {
      const file = openSafetensors(single);
      files.push(file);
      for (const t of file.tensors) where.set(t.name, file);
    } else {
      throw new ModelFormatError("no model.safetensors or model.safetensors.index.json in the folder", { file: single });
    }
  } catch (err) {
    for (const f of files) f.close();
    throw err;
  }
  return { files, where };
}

/**
 * "sha256:<hex>" over config.json's bytes and the per-file fingerprints of the weight files (each streamed
 * and cached by fingerprintFile), so re-loading an unchanged folder costs no re-hash.
 */
async function fingerprintFolder(configPath: string, weightFiles: string[]): Promise<string> {
  const hash = createHash("sha256");
  hash.update(readFileSync(configPath));
  for (const p of weightFiles) hash.update(`\n${basename(p)}:${await fingerprintFile(p)}`);
  return `sha256:${hash.digest("hex")}`;
}

/** Expected [shape] of each canonical tensor of block i (undefined entries are absent for this spec). */
function expectedShapes(spec: ModelSpec): Map<string, number[]> {
  const m = new Map<string, number[]>();
  m.set(TensorNames.tokenEmbedding, [spec.vocabSize, spec.dim]);
  m.set(TensorNames.outputNorm, [spec.dim]);
  if (!spec.tiedEmbeddings) m.set(TensorNames.output, [spec.vocabSize, spec.dim]);
  const qDim = spec.heads * spec.headDim;
  const kvDim = spec.kvHeads * spec.headDim;
  for (let i = 0; i < spec.blocks; i++) {
    const b = TensorNames.block(i);
    m.set(b.attnNorm, [spec.dim]);
    m.set(b.q, [qDim, spec.dim]);
    m.set(b.k, [kvDim, spec.dim]);
    m.set(b.v, [kvDim, spec.dim]);
    if (spec.qkvBias) {
      m.set(b.qBias, [qDim]);
      m.set(b.kBias, [kvDim]);
      m.set(b.vBias, [kvDim]);
    }
    if (spec.qkNorm) {
      m.set(b.qNorm, [spec.headDim]);
      m.set(b.kNorm, [spec.headDim]);
    }
    m.set(b.o, [spec.dim, qDim]);
    m.set(b.ffnNorm, [spec.dim]);
    m.set(b.gate, [spec.ffnDim, spec.dim]);
    m.set(b.up, [spec.ffnDim, spec.dim]);
    m.set(b.down, [spec.dim, spec.ffnDim]);
  }
  return m;
}

/** Chat template from tokenizer_config.json (string, or the "default" of a named list) or chat_template.jinja. */
export function readChatTemplate(dir: string): string | undefined {
  const jinjaPath = join(dir, "chat_template.jinja");
  if (existsSync(jinjaPath)) return readFileSync(jinjaPath, "utf8");
  const tc = readJsonFile(join(dir, "tokenizer_config.json"), true);
  const t = tc?.chat_template;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const named = t as { name?: unknown; template?: unknown }[];
    const pick = named.find((x) => x?.name === "default") ?? named[0];
    if (typeof pick?.template === "string") return pick.template;
  }
  return undefined;
}

/**
 * Loads a Hugging Face folder. Reads only JSON files and safetensors headers (plus one streamed pass for
 * the fingerprint); tensors are read when the graph builder asks for them.
 */
export async function loadHfFolder(dir: string): Promise<LoadedModel> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ModelFormatError("not a folder", { file: dir });
  const configPath = join(dir, "config.json");
  const generationPath = join(dir, "generation_config.json");
  const parsed = parseHfConfig(readJsonFile(configPath), configPath, readJsonFile(generationPath, true), generationPath);
  const spec = parsed.spec;
  const { files, where } = openShards(dir);
  try {
    // Map HF names to canonical names; check dtypes against the config.
    const locations = new Map<string, TensorLocation>();
    for (const [hfName, file] of where) {
      const canonical = hfToCanonical(hfName);
      if (canonical === undefined) {
        if (isIgnorableHfTensor(hfName)) continue;
        throw new UnsupportedModelError(`tensor ${hfName} has no counterpart in onepass's ${spec.architecture} decoder`, { file: file.path, field: hfName });
      }
      const st = file.info(hfName);
      const dtype = SAFETENSORS_FLOAT_STORAGE[st.dtype];
      if (dtype === undefined) throw new UnsupportedModelError(`dtype ${st.dtype} is not supported (F32, F16, BF16)`, { file: file.path, field: `${hfName}.dtype` });
      // Weight matrices must be stored as the config says; 1-D tensors (norms, biases) are often kept in F32
      // inside BF16/F16 checkpoints, and any float dtype is fine for them.
      if (parsed.expectedDType !== undefined && st.dtype !== parsed.expectedDType && st.shape.length !== 1) {
        throw new ModelFormatError(
          `config says ${parsed.expectedDType} but tensor ${hfName} in ${file.path} is stored as ${st.dtype}`,
          { file: configPath, field: parsed.dtypeField },
        );
      }
      locations.set(canonical, { file, hfName, info: { name: canonical, shape: st.shape.slice(), dtype } });
    }
    // A missing lm_head means the embedding matrix is shared, whatever tie_word_embeddings says.
    if (parsed.tieWordEmbeddings === true || !locations.has(TensorNames.output)) {
      spec.tiedEmbeddings = true;
      locations.delete(TensorNames.output);
    }
    const expected = expectedShapes(spec);
    const weightsPath = files.length === 1 ? files[0].path : join(dir, "model.safetensors.index.json");
    for (const [name, shape] of expected) {
      const loc = locations.get(name);
      if (loc === undefined) throw new ModelFormatError(`required tensor is missing (canonical name ${name})`, { file: weightsPath, field: canonicalHfHint(name) });
      if (loc.info.shape.length !== shape.length || loc.info.shape.some((s, i) => s !== shape[i])) {
        throw new ModelFormatError(`shape [${loc.info.shape}] does not match config.json (expected [${shape}])`, { file: loc.file.path, field: loc.hfName });
      }
    }
    for (const [name, loc] of locations) {
      if (!expected.has(name)) {
        throw new UnsupportedModelError(`unexpected tensor for this config (canonical name ${name})`, { file: loc.file.path, field: loc.hfName });
      }
    }
    const weights = hfWeightSource(dir, locations, files);
    const fingerprint = await fingerprintFolder(configPath, files.map((f) => f.path));
    const chatTemplate = readChatTemplate(dir);
    const model: LoadedModel = { spec, weights, fingerprint, format: "hf" };
    if (chatTemplate !== undefined) model.chatTemplate = chatTemplate;
    return model;
  } catch (err) {
    for (const f of files) f.close();
    throw err;
  }
}

/** Error messages name tensors as the user sees them in the file (HF names). */
function canonicalHfHint(name: string): string {
  return canonicalToHf(name) ?? name;
}

function hfWeightSource(dir: string, locations: Map<string, TensorLocation>, files: SafetensorsFile[]): WeightSource {
  return tableWeightSource(dir, locations, (loc) => loc.file.read(loc.hfName), () => {
    for (const f of files) f.close();
  });
}
