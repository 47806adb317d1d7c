/**
 * Labelled text datasets: files in any supported format (formats.ts) → `Dataset` of {text, label id} with the
 * label names recorded. Named presets cover every set under shared/data (see SOURCES.md there).
 *
 *   const ds = await loadPreset("sst2", { split: "train" });           // palma2025 SST-2 subset
 *   const ds = await loadDataset({ files: [{ path: "x.jsonl" }], textField: "prompt", labelField: "meta.y" });
 */
import { createHash } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { resolve, join } from "node:path";
import { DatasetError } from "../errors.js";
import { formatFromPath, getPath, readRecords, type DatasetFormat } from "./formats.js";

export type { DatasetFormat } from "./formats.js";

export interface Example {
  /** The text, or the prompt of a prompt + response pair. */
  text: string;
  /** The answer, for response-level data (LoadOptions.responseField): response probes are trained on its tokens. */
  response?: string;
  /** Label id: an index into `Dataset.labelNames`. */
  label: number;
}

/**
 * What kind of task a dataset is, when known (presets know; plain files do not). It sets defaults the paper
 * ties to the task: safety tasks select and report on F1 of the positive (harmful) class, sentiment and
 * topic/emotion tasks on accuracy.
 */
export type DatasetTask = "safety" | "sentiment" | "topic";

export interface Dataset {
  /** Preset name or file path(s), for manifests and reports. */
  name: string;
  /** The preset's task kind; absent for plain files. */
  task?: DatasetTask;
  split?: string;
  /** Files read, in order. */
  files: string[];
  examples: Example[];
  /** id → name; ids are 0..labelNames.length-1. */
  labelNames: string[];
  /** How the examples were picked from the files (recorded in feature-cache manifests). */
  textField: string;
  /** Set when examples carry a `response` (prompt + response data). */
  responseField?: string;
  labelField: string;
}

export interface DatasetFile {
  path: string;
  /** Default: from the extension (.jsonl .csv .tsv .txt(text;label) .json .parquet). */
  format?: DatasetFormat;
  /** For JSON objects: dotted path of the record array (default `instances`). */
  recordsField?: string;
  /** Every row of this file gets this label (e.g. harmful.json → "harmful"); the label field is not read. */
  constantLabel?: string | number;
}

export interface LoadOptions {
  files: DatasetFile[];
  /** Display name (default: the file paths). */
  name?: string;
  split?: string;
  /** Dotted path of the text (default "text"). */
  textField?: string;
  /**
   * Instead of one text field: a template with `{dotted.path}` placeholders, e.g.
   * "User: {text}\n\nAssistant: {response}". A null/missing value renders as "None".
   */
  textTemplate?: string;
  /** Dotted path of the label (default "label"). */
  labelField?: string;
  /**
   * Dotted path of a response (prompt + response data): examples get `response`, and `text` stays the prompt.
   * A row without a response string is skipped under dropMissingLabels, else an error.
   */
  responseField?: string;
  /**
   * Fixed label vocabulary. String labels map to their index here (or through `labelMap`); integer labels
   * (numbers or digit strings) are ids and must be < labelNames.length. Without it, integer labels are used
   * as ids (names "0", "1", ...) and string labels get ids in sorted order.
   */
  labelNames?: string[];
  /** Raw label value (as a string) → id, applied first. E.g. { safe: 0, harmful: 1 }. */
  labelMap?: Record<string, number>;
  /**
   * How `limit` picks rows: "first" (default) the first `limit` rows in file order; "stratified" a sample of
   * `limit` rows with every class in proportion, spread evenly over the file (presets use it).
   */
  sample?: "first" | "stratified";
  /** Skip rows whose label is null/missing/empty instead of failing. */
  dropMissingLabels?: boolean;
  /** Keep only rows where each dotted path equals the value (e.g. { split: "train" }). */
  where?: Record<string, string | number | boolean | null>;
  /** Keep the first N examples (after filtering). */
  limit?: number;
}

type RawLabel = { kind: "id"; id: number } | { kind: "name"; name: string };

/** Load labelled examples from files. Bad rows → DatasetError naming the file, line/row and field. */
export async function loadDataset(options: LoadOptions): Promise<Dataset> {
  const textField = options.textField ?? "text";
  const labelField = options.labelField ?? "label";
  if (options.files.length === 0) throw new DatasetError("no dataset files given");
  const pending: { text: string; response?: string; raw: RawLabel; file: string; where: string }[] = [];
  const stratified = options.sample === "stratified";
  // A stratified sample needs every row's label first; "first" stops reading at the limit.
  const limit = stratified ? Infinity : options.limit ?? Infinity;
  const fixedNames = options.labelNames;

  for (const f of options.files) {
    const format = f.format ?? formatFromPath(f.path);
    if (format === undefined) {
      throw new DatasetError("unknown dataset format (use .jsonl .csv .tsv .txt .json .parquet or give the format)", { file: f.path });
    }
    if (!existsSync(f.path) || !statSync(f.path).isFile()) throw new DatasetError("dataset file not found", { file: f.path });
    const records = await readRecords(f.path, format, f.recordsField);
    for (const rec of records) {
      if (pending.length >= limit) break;
      if (options.where !== undefined && !matches(rec.value, options.where)) continue;
      const text = options.textTemplate !== undefined ? renderTemplate(options.textTemplate, rec.value) : getPath(rec.value, textField);
      if (typeof text !== "string") {
        throw new DatasetError(`${rec.where}: text is ${text === undefined ? "missing" : `not a string (${JSON.stringify(text)})`}`, {
          file: f.path,
          field: options.textTemplate !== undefined ? "textTemplate" : textField,
        });
      }
      let response: string | undefined;
      if (options.responseField !== undefined) {
        const r = getPath(rec.value, options.responseField);
        if (typeof r !== "string" || r.length === 0) {
          if (options.dropMissingLabels) continue;
          throw new DatasetError(`${rec.where}: response is ${r === undefined || r === null ? "missing" : `not a non-empty string (${JSON.stringify(r)})`}`, { file: f.path, field: options.responseField });
        }
        response = r;
      }
      const rawValue = f.constantLabel !== undefined ? f.constantLabel : getPath(rec.value, labelField);
      if (rawValue === undefined || rawValue === null || rawValue === "") {
        if (options.dropMissingLabels) continue;
        throw new DatasetError(`${rec.where}: label is missing`, { file: f.path, field: labelField });
      }
      const raw = classifyLabel(rawValue, options.labelMap, fixedNames);
      if (raw === undefined) {
        const known = fixedNames ?? Object.keys(options.labelMap ?? {});
        const expected = known.length > 0 ? `one of ${JSON.stringify(known)}` : "a class name or a non-negative integer class id";
        throw new DatasetError(`${rec.where}: label ${JSON.stringify(rawValue)} is not ${expected}`, {
          file: f.path,
          field: labelField,
        });
      }
      if (raw.kind === "id" && fixedNames !== undefined && raw.id >= fixedNames.length) {
        throw new DatasetError(`${rec.where}: label id ${raw.id} out of range (${fixedNames.length} label names)`, { file: f.path, field: labelField });
      }
      if (raw.kind === "id" && raw.id >= MAX_CLASSES) {
        throw new DatasetError(`${rec.where}: label id ${raw.id} is too large (at most ${MAX_CLASSES} classes; integer labels are class ids 0..K-1)`, { file: f.path, field: labelField });
      }
      pending.push({ text, ...(response !== undefined ? { response } : {}), raw, file: f.path, where: rec.where });
    }
  }

  // Resolve ids and names.
  let labelNames: string[];
  let idOf: (r: RawLabel) => number;
  if (fixedNames !== undefined) {
    labelNames = [...fixedNames];
    idOf = (r) => (r.kind === "id" ? r.id : fixedNames.indexOf(r.name));
  } else {
    const names = [...new Set(pending.filter((p) => p.raw.kind === "name").map((p) => (p.raw as { name: string }).name))].sort();
    const ids = pending.filter((p) => p.raw.kind === "id");
    if (names.length > 0 && ids.length > 0) {
      const p = ids[0];
      throw new DatasetError(`${p.where}: integer label mixed with string labels (give labelNames)`, { file: p.file, field: labelField });
    }
    if (names.length > 0) {
      labelNames = names;
      idOf = (r) => names.indexOf((r as { name: string }).name);
    } else {
      const maxId = ids.reduce((m, p) => Math.max(m, (p.raw as { id: number }).id), -1);
      // Integer ids name classes 0..K-1: an id past the classes actually present (e.g. 3000000 among 0/1)
      // would silently make millions of empty classes.
      const present = new Set(ids.map((p) => (p.raw as { id: number }).id));
      if (options.labelMap === undefined && maxId + 1 > present.size) {
        const missing = Array.from({ length: maxId + 1 }, (_, k) => k).find((k) => !present.has(k))!;
        const p = ids.find((q) => (q.raw as { id: number }).id === maxId)!;
        throw new DatasetError(
          `${p.where}: label ${maxId} implies ${maxId + 1} classes but only ${present.size} distinct labels occur (no row has label ${missing}); integer labels must be class ids 0..K-1`,
          { file: p.file, field: labelField },
        );
      }
      const mapNames = invertLabelMap(options.labelMap, maxId + 1);
      labelNames = mapNames ?? Array.from({ length: maxId + 1 }, (_, k) => String(k));
      idOf = (r) => (r as { id: number }).id;
    }
  }
  let examples: Example[] = pending.map((p) => ({ text: p.text, ...(p.response !== undefined ? { response: p.response } : {}), label: idOf(p.raw) }));
  if (examples.length === 0) {
    throw new DatasetError(`no examples${options.where !== undefined || options.dropMissingLabels === true ? " (after filtering)" : ""}: the file has no data rows`, { file: options.files[0].path });
  }
  if (stratified && options.limit !== undefined && options.limit < examples.length) examples = stratifiedSample(examples, options.limit);
  return {
    name: options.name ?? options.files.map((f) => f.path).join(","),
    split: options.split,
    files: options.files.map((f) => f.path),
    examples,
    labelNames,
    textField: options.textTemplate ?? textField,
    labelField,
    ...(options.responseField !== undefined ? { responseField: options.responseField } : {}),
  };
}

/** Largest number of classes a dataset may have (integer labels are class ids below it). */
export const MAX_CLASSES = 1000;

/**
 * `n` examples, each class in proportion to its size and spread evenly over its rows, in file order: a
 * preset sorted by class (refusal: all harmless rows, then all harmful) still yields every class.
 */
export function stratifiedSample(examples: Example[], n: number): Example[] {
  const byClass = new Map<number, number[]>();
  examples.forEach((e, i) => {
    const rows = byClass.get(e.label) ?? [];
    rows.push(i);
    byClass.set(e.label, rows);
  });
  // Quotas: the first n rows when each class's rows are spaced 1/count apart (largest-remainder style).
  const keyed: { label: number; key: number }[] = [];
  for (const [label, rows] of byClass) rows.forEach((_, r) => keyed.push({ label, key: (r + 0.5) / rows.length }));
  keyed.sort((a, b) => a.key - b.key || a.label - b.label);
  const quota = new Map<number, number>();
  for (const k of keyed.slice(0, n)) quota.set(k.label, (quota.get(k.label) ?? 0) + 1);
  // Within a class, rows evenly spaced over the file.
  const picked: number[] = [];
  for (const [label, q] of quota) {
    const rows = byClass.get(label)!;
    for (let j = 0; j < q; j++) picked.push(rows[Math.floor(((j + 0.5) * rows.length) / q)]);
  }
  return picked.sort((a, b) => a - b).map((i) => examples[i]);
}

function classifyLabel(value: unknown, map: Record<string, number> | undefined, names: string[] | undefined): RawLabel | undefined {
  const key = typeof value === "string" ? value : typeof value === "number" || typeof value === "boolean" ? String(value) : undefined;
  if (key === undefined) return undefined;
  if (map !== undefined && Object.prototype.hasOwnProperty.call(map, key)) return { kind: "id", id: map[key] };
  if (typeof value === "string" && names !== undefined && names.includes(value)) return { kind: "name", name: value };
  if (typeof value === "boolean") return { kind: "id", id: value ? 1 : 0 };
  if (typeof value === "number") return Number.isInteger(value) && value >= 0 ? { kind: "id", id: value } : undefined;
  if (/^\d+$/.test(key.trim())) return { kind: "id", id: Number(key.trim()) };
  if (names !== undefined || map !== undefined) return undefined;
  return { kind: "name", name: key };
}

/** With a labelMap like {safe: 0, harmful: 1}, names come from it when it covers every id. */
function invertLabelMap(map: Record<string, number> | undefined, count: number): string[] | undefined {
  if (map === undefined) return undefined;
  const names: (string | undefined)[] = new Array(count).fill(undefined);
  for (const [k, v] of Object.entries(map)) if (v < count && names[v] === undefined) names[v] = k;
  return names.every((n) => n !== undefined) ? (names as string[]) : undefined;
}

function matches(value: Record<string, unknown>, where: Record<string, string | number | boolean | null>): boolean {
  for (const [path, want] of Object.entries(where)) {
    const got = getPath(value, path);
    if (want === null ? got !== null && got !== undefined : got !== want) return false;
  }
  return true;
}

function renderTemplate(template: string, value: Record<string, unknown>): string {
  return template.replace(/\{([A-Za-z0-9_.]+)\}/g, (_, path: string) => {
    const v = getPath(value, path);
    return v === null || v === undefined ? "None" : String(v);
  });
}

/** sha256 over the examples (text and label) — identifies a dataset's content in cache manifests. */
export function datasetHash(examples: readonly Example[]): string {
  const h = createHash("sha256");
  for (const e of examples) {
    h.update(String(e.label));
    h.update("\0");
    h.update(e.text);
    h.update("\0");
  }
  return h.digest("hex");
}

// ---------------------------------------------------------------------------------------------------------
// Presets

interface PresetPart extends Omit<DatasetFile, "path"> {
  /** Relative to the data dir. */
  path: string;
}

export interface DatasetPreset {
  name: string;
  description: string;
  /** split → files (relative to the data dir). */
  splits: Record<string, PresetPart[]>;
  /** Split used when none is asked for. */
  defaultSplit: string;
  /** Task kind, recorded in feature-cache manifests (sets train's default selection metric). */
  task: DatasetTask;
  options: Omit<LoadOptions, "files" | "name" | "split" | "limit">;
  /** For presets reading one file that holds every split: the field whose value is the split name. */
  splitField?: string;
}

const BINARY_SENTIMENT = ["negative", "positive"];
const EMOTION = ["sadness", "joy", "love", "anger", "fear", "surprise"];
const HARM = ["unharmful", "harmful"];
const RESPONSE_TEMPLATE = "Human user:\n{text}\n\nAI assistant:\n{response}";

/** The JUDGE-BENCH copy of ToxicChat: one preset per human-annotated label (`annotations.<label>.majority_human`). */
function judgeBenchToxicChat(name: string, label: string, labelNames: string[], description: string): DatasetPreset {
  return {
    name,
    description,
    task: "safety",
    splits: {
      train: [{ path: "toxicchat/judgebench_toxic_chat_train.json" }],
      test: [{ path: "toxicchat/judgebench_toxic_chat_test.json" }],
    },
    defaultSplit: "train",
    options: { textField: "instance", labelField: `annotations.${label}.majority_human`, labelNames },
  };
}

function palma(name: string, file: string, labelNames: string[], task: DatasetTask, description: string): DatasetPreset {
  return {
    name,
    description,
    task,
    splits: { train: [{ path: `palma2025/${file}_train.csv` }], test: [{ path: `palma2025/${file}_test.csv` }] },
    defaultSplit: "train",
    options: { labelNames },
  };
}

function normalized(name: string, file: string, labelNames: string[], task: DatasetTask, splits: string[], extra: Partial<LoadOptions> = {}): DatasetPreset {
  return {
    name,
    task,
    description: `normalized/${file}.jsonl (splits ${splits.join(", ")})`,
    splits: Object.fromEntries(splits.map((s) => [s, [{ path: `normalized/${file}.jsonl` }]])),
    defaultSplit: splits[0],
    options: { labelNames, ...extra },
    splitField: "split",
  };
}

function responsePreset(name: string, file: string, description: string): DatasetPreset {
  return {
    name,
    description: `${description}; text = prompt, response separate`,
    task: "safety",
    splits: { test: [{ path: `normalized/${file}.jsonl` }] },
    defaultSplit: "test",
    options: { labelNames: HARM, responseField: "response", dropMissingLabels: true },
  };
}

const refusalSplit = (s: string): PresetPart[] => [
  { path: `refusal_direction/harmless_${s}.json`, constantLabel: 0 },
  { path: `refusal_direction/harmful_${s}.json`, constantLabel: 1 },
];

/** Every preset, by name. Paths are relative to the data dir (default ../shared/data). */
export const DATASET_PRESETS: Record<string, DatasetPreset> = Object.fromEntries(
  [
    palma("sst2", "sst2", BINARY_SENTIMENT, "sentiment", "SST-2 subset of Palma et al. 2025 (6,920 train / 1,821 test)"),
    palma("imdb", "reduced_imdb", BINARY_SENTIMENT, "sentiment", "IMDB reduced, Palma et al. 2025 (6,250 / 6,250)"),
    palma("emotion", "reduced_emotion", EMOTION, "topic", "dair-ai emotion reduced, Palma et al. 2025 (6,000 / 2,000), 6 labels"),
    {
      name: "sst2-glue",
      description: "GLUE SST-2 TSV (67,349 train / 872 dev; `test` = dev, GLUE test labels are hidden)",
      splits: { train: [{ path: "sst2/train.tsv" }], dev: [{ path: "sst2/dev.tsv" }], test: [{ path: "sst2/dev.tsv" }] },
      defaultSplit: "train",
      task: "sentiment" as const,
      options: { textField: "sentence", labelNames: BINARY_SENTIMENT },
    },
    {
      name: "imdb-full",
      description: "aclImdb v1 as JSONL (25,000 / 25,000)",
      splits: { train: [{ path: "imdb/train.jsonl" }], test: [{ path: "imdb/test.jsonl" }] },
      defaultSplit: "train",
      task: "sentiment" as const,
      options: { labelNames: BINARY_SENTIMENT },
    },
    {
      name: "emotion-full",
      description: "dair-ai emotion text;label files (16,000 / 2,000 val / 2,000 test)",
      splits: { train: [{ path: "emotion/train.txt" }], val: [{ path: "emotion/val.txt" }], test: [{ path: "emotion/test.txt" }] },
      defaultSplit: "train",
      task: "topic" as const,
      options: { labelNames: EMOTION },
    },
    judgeBenchToxicChat("toxicchat", "toxicity", ["non-toxic", "toxic"], "ToxicChat 0124 human-annotated (JUDGE-BENCH; 2,801 train / 2,853 test), label = toxicity"),
    judgeBenchToxicChat("toxicchat-jailbreak", "jailbreaking", ["benign", "jailbreak"], "ToxicChat 0124 human-annotated, label = jailbreaking"),
    {
      name: "toxicchat-test-full",
      description: "ToxicChat 0124 full test split (5,083; wizard101 copy), label safe/harmful",
      splits: { test: [{ path: "toxicchat/wizard101_toxicchat_test.json" }] },
      defaultSplit: "test",
      task: "safety" as const,
      options: { labelMap: { safe: 0, harmful: 1 }, labelNames: ["safe", "harmful"] },
    },
    {
      name: "wildguardmix",
      description: "WildGuardTest prompts (parquet), label = prompt_harm_label, rows without one dropped (1,699)",
      splits: { test: [{ path: "wildguardmix/wildguardtest.parquet" }] },
      defaultSplit: "test",
      task: "safety" as const,
      options: { textField: "prompt", labelField: "prompt_harm_label", labelNames: HARM, dropMissingLabels: true },
    },
    {
      name: "wildguardmix-response",
      description: "WildGuardTest prompt+response, label = response_harm_label, rows without one dropped (1,709)",
      splits: { test: [{ path: "wildguardmix/wildguardtest.parquet" }] },
      defaultSplit: "test",
      task: "safety" as const,
      options: {
        textTemplate: "Human user:\n{prompt}\n\nAI assistant:\n{response}",
        labelField: "response_harm_label",
        labelNames: HARM,
        dropMissingLabels: true,
      },
    },
    {
      name: "refusal",
      description: "Arditi et al. refusal-direction splits: harmless (Alpaca) = 0, harmful = 1",
      splits: { train: refusalSplit("train"), val: refusalSplit("val"), test: refusalSplit("test") },
      defaultSplit: "train",
      task: "safety" as const,
      options: { textField: "instruction", labelNames: ["harmless", "harmful"] },
    },
    {
      name: "guardreasoner-aegis",
      description: "GuardReasoner Aegis 1.0 test (359 prompts), prompt harm",
      splits: { test: [{ path: "normalized/guardreasoner_aegis_test.jsonl" }] },
      defaultSplit: "test",
      task: "safety" as const,
      options: { labelNames: HARM },
    },
    {
      name: "guardreasoner-beavertails",
      description: "GuardReasoner BeaverTails 30k test (3,021), response harm; text = prompt + response",
      splits: { test: [{ path: "normalized/guardreasoner_beavertails_30k_test.jsonl" }] },
      defaultSplit: "test",
      task: "safety" as const,
      options: { labelNames: HARM, textTemplate: RESPONSE_TEMPLATE },
    },
    {
      name: "guardreasoner-saferlhf",
      description: "GuardReasoner PKU-SafeRLHF test (2,000), response harm; text = prompt + response",
      splits: { test: [{ path: "normalized/guardreasoner_safe_rlhf_test.jsonl" }] },
      defaultSplit: "test",
      task: "safety" as const,
      options: { labelNames: HARM, textTemplate: RESPONSE_TEMPLATE },
    },
    // Response-level harm with prompt and response kept apart, for response probes (`extract --target response`):
    // the prompt is the context, the response's tokens are what the probe reads. Test splits only upstream: split
    // them for training yourself (bench/response-beavertails.ts uses a seeded stratified 70/30 split).
    responsePreset("beavertails-response", "guardreasoner_beavertails_30k_test", "BeaverTails 30k test (GuardReasoner copy, 3,021), response harm"),
    responsePreset("saferlhf-response", "guardreasoner_safe_rlhf_test", "PKU-SafeRLHF test (GuardReasoner copy, 2,000), response harm"),
    responsePreset("wildguardtest-response", "wildguardtest_response", "WildGuardTest rows with a response_harm_label (1,709), response harm"),
    normalized("normalized/sst2", "sst2", BINARY_SENTIMENT, "sentiment", ["train", "dev"]),
    normalized("normalized/emotion", "emotion", EMOTION, "topic", ["train", "val", "test"]),
    normalized("normalized/toxicchat_human", "toxicchat_human", ["non-toxic", "toxic"], "safety", ["train", "test"]),
    normalized("normalized/toxicchat_test_full", "toxicchat_test_full", ["safe", "harmful"], "safety", ["test"]),
    normalized("normalized/wildguardtest_prompt", "wildguardtest_prompt", HARM, "safety", ["test"]),
    normalized("normalized/wildguardtest_response", "wildguardtest_response", HARM, "safety", ["test"], { textTemplate: RESPONSE_TEMPLATE }),
    normalized("normalized/guardreasoner_aegis_test", "guardreasoner_aegis_test", HARM, "safety", ["test"]),
    normalized("normalized/guardreasoner_beavertails_30k_test", "guardreasoner_beavertails_30k_test", HARM, "safety", ["test"], { textTemplate: RESPONSE_TEMPLATE }),
    normalized("normalized/guardreasoner_safe_rlhf_test", "guardreasoner_safe_rlhf_test", HARM, "safety", ["test"], { textTemplate: RESPONSE_TEMPLATE }),
  ].map((p) => [p.name, p]),
);

/**
 * The data dir: the explicit argument, else $ONEPASS_DATA_DIR, else ../shared/data relative to the cwd when
 * it exists.
 */
export function resolveDataDir(dataDir?: string): string {
  const dir = dataDir ?? process.env.ONEPASS_DATA_DIR ?? resolve(process.cwd(), "../shared/data");
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new DatasetError("data directory not found (pass --data-dir / dataDir, or set ONEPASS_DATA_DIR)", { file: dir });
  }
  return dir;
}

export interface PresetOptions {
  split?: string;
  dataDir?: string;
  limit?: number;
  /** Override the preset's text/label fields. */
  textField?: string;
  labelField?: string;
}

/** Load a named preset (see DATASET_PRESETS). */
export async function loadPreset(name: string, options: PresetOptions = {}): Promise<Dataset> {
  const preset = DATASET_PRESETS[name];
  if (preset === undefined) {
    throw new DatasetError(`unknown dataset preset (known: ${Object.keys(DATASET_PRESETS).join(", ")})`, { file: name });
  }
  const split = options.split ?? preset.defaultSplit;
  const parts = preset.splits[split];
  if (parts === undefined) {
    throw new DatasetError(`preset ${name} has no split '${split}' (available: ${Object.keys(preset.splits).join(", ")})`, { file: name, field: "split" });
  }
  const dir = resolveDataDir(options.dataDir);
  const opts: LoadOptions = {
    ...preset.options,
    name,
    split,
    files: parts.map((p) => ({ ...p, path: join(dir, p.path) })),
    limit: options.limit,
    // Preset files are often ordered by class: the first N rows could all be one class.
    sample: "stratified",
  };
  if (preset.splitField !== undefined) opts.where = { ...(opts.where ?? {}), [preset.splitField]: split };
  if (options.textField !== undefined) {
    opts.textField = options.textField;
    delete opts.textTemplate;
  }
  if (options.labelField !== undefined) opts.labelField = options.labelField;
  const ds = await loadDataset(opts);
  if (ds.examples.length === 0) throw new DatasetError(`preset ${name} split ${split}: no examples`, { file: ds.files[0] });
  return { ...ds, task: preset.task };
}

/** A preset name or a file path: what `onepass extract --data D` accepts. */
export async function loadDatasetArg(
  nameOrPath: string,
  options: PresetOptions & Partial<Pick<LoadOptions, "labelNames" | "labelMap" | "dropMissingLabels" | "responseField">> = {},
): Promise<Dataset> {
  if (DATASET_PRESETS[nameOrPath] !== undefined) return loadPreset(nameOrPath, options);
  if (!existsSync(nameOrPath)) {
    throw new DatasetError(`neither a dataset preset nor an existing file (presets: ${Object.keys(DATASET_PRESETS).join(", ")})`, { file: nameOrPath });
  }
  return loadDataset({
    files: [{ path: nameOrPath }],
    split: options.split,
    textField: options.textField,
    labelField: options.labelField,
    labelNames: options.labelNames,
    labelMap: options.labelMap,
    dropMissingLabels: options.dropMissingLabels,
    responseField: options.responseField,
    limit: options.limit,
  });
}
