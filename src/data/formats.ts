/**
 * Row readers for the dataset file formats onepass understands. Each yields raw records (objects) with the
 * 1-based line (or 0-based row, for parquet/JSON) where the record starts, so errors can point at it.
 * Field selection and label mapping happen in datasets.ts.
 */
import { readFileSync } from "node:fs";
import { DatasetError } from "../errors.js";

export type DatasetFormat = "jsonl" | "csv" | "tsv" | "text-semicolon" | "json" | "parquet";

/** One record of a dataset file and where it sits in the file. */
export interface RawRecord {
  /** Field name → value (strings for CSV/TSV/text files; any JSON value otherwise). */
  value: Record<string, unknown>;
  /** Human-readable position for error messages: "line 12" or "row 3". */
  where: string;
}

/** Guess the format from the file name; undefined when the extension says nothing. */
export function formatFromPath(path: string): DatasetFormat | undefined {
  const lower = path.toLowerCase();
  if (lower.endsWith(".jsonl") || lower.endsWith(".ndjson")) return "jsonl";
  if (lower.endsWith(".csv")) return "csv";
  if (lower.endsWith(".tsv")) return "tsv";
  if (lower.endsWith(".txt")) return "text-semicolon";
  if (lower.endsWith(".json")) return "json";
  if (lower.endsWith(".parquet")) return "parquet";
  return undefined;
}

function readText(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new DatasetError(`cannot read dataset file: ${(err as Error).message}`, { file }, { cause: err });
  }
  // A UTF-8 byte-order mark is not part of the first field name.
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** JSON Lines: one object per non-empty line. */
export function readJsonl(file: string): RawRecord[] {
  const text = readText(file);
  const out: RawRecord[] = [];
  let lineNo = 0;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    lineNo++;
    const line = text.slice(start, end).trim();
    start = end + 1;
    if (line.length === 0) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new DatasetError(`line ${lineNo}: invalid JSON (${(err as Error).message})`, { file }, { cause: err });
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new DatasetError(`line ${lineNo}: expected a JSON object per line`, { file });
    }
    out.push({ value: value as Record<string, unknown>, where: `line ${lineNo}` });
  }
  return out;
}

/**
 * RFC 4180 CSV with a header row: fields separated by commas, optionally in double quotes; inside quotes
 * `""` is a quote and commas/newlines are literal. CRLF and LF line ends both work.
 */
export function readCsv(file: string): RawRecord[] {
  const text = readText(file);
  const rows: { fields: string[]; line: number }[] = [];
  let fields: string[] = [];
  let field = "";
  let line = 1;
  let rowLine = 1;
  let i = 0;
  let rowStarted = false; // false on a blank line (skipped), true once the row has any character
  let fieldQuoted = false; // the current field was a quoted one (so a quote cannot start it again)
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === '"' && field.length === 0 && !fieldQuoted) {
      // Quoted field: runs to the next lone quote.
      const quoteLine = line;
      i++;
      let closed = false;
      while (i < n) {
        const q = text[i];
        if (q === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          closed = true;
          i++;
          break;
        }
        if (q === "\n") line++;
        field += q;
        i++;
      }
      if (!closed) throw new DatasetError(`line ${quoteLine}: unterminated quoted field`, { file });
      fieldQuoted = true;
      rowStarted = true;
      const next = text[i];
      if (i < n && next !== "," && next !== "\n" && next !== "\r") {
        throw new DatasetError(`line ${line}: unexpected character ${JSON.stringify(next)} after a closing quote`, { file });
      }
      continue;
    }
    if (c === ",") {
      fields.push(field);
      field = "";
      fieldQuoted = false;
      rowStarted = true;
      i++;
      continue;
    }
    if (c === "\r" && text[i + 1] === "\n") {
      i++;
      continue;
    }
    if (c === "\n") {
      if (rowStarted) {
        fields.push(field);
        rows.push({ fields, line: rowLine });
      }
      fields = [];
      field = "";
      fieldQuoted = false;
      rowStarted = false;
      line++;
      rowLine = line;
      i++;
      continue;
    }
    if (c === '"') throw new DatasetError(`line ${line}: stray double quote inside an unquoted field`, { file });
    field += c;
    rowStarted = true;
    i++;
  }
  if (rowStarted) {
    fields.push(field);
    rows.push({ fields, line: rowLine });
  }
  return recordsFromRows(file, rows);
}

/** GLUE-style TSV: header row, fields split on tabs, no quoting at all (Python csv QUOTE_NONE). */
export function readTsv(file: string): RawRecord[] {
  const text = readText(file);
  const rows: { fields: string[]; line: number }[] = [];
  const lines = text.split("\n");
  for (let k = 0; k < lines.length; k++) {
    let l = lines[k];
    if (l.endsWith("\r")) l = l.slice(0, -1);
    if (l.length === 0) continue;
    rows.push({ fields: l.split("\t"), line: k + 1 });
  }
  return recordsFromRows(file, rows);
}

function recordsFromRows(file: string, rows: { fields: string[]; line: number }[]): RawRecord[] {
  if (rows.length === 0) throw new DatasetError("file is empty (no header row)", { file });
  const header = rows[0].fields;
  const seen = new Set<string>();
  for (const name of header) {
    if (seen.has(name) && name !== "") throw new DatasetError(`line 1: duplicate column name ${JSON.stringify(name)}`, { file });
    seen.add(name);
  }
  const out: RawRecord[] = [];
  for (let r = 1; r < rows.length; r++) {
    const { fields, line } = rows[r];
    if (fields.length !== header.length) {
      throw new DatasetError(`line ${line}: ${fields.length} fields, header has ${header.length}`, { file });
    }
    const value: Record<string, unknown> = {};
    for (let c = 0; c < header.length; c++) value[header[c]] = fields[c];
    out.push({ value, where: `line ${line}` });
  }
  return out;
}

/**
 * `text;label` lines (dair-ai emotion). The label is after the LAST semicolon (texts may contain `;`).
 * A first line `text;label_name` / `text;label` is a header and skipped. Records get fields `text`, `label`.
 */
export function readTextSemicolon(file: string): RawRecord[] {
  const text = readText(file);
  const lines = text.split("\n");
  const out: RawRecord[] = [];
  for (let k = 0; k < lines.length; k++) {
    let l = lines[k];
    if (l.endsWith("\r")) l = l.slice(0, -1);
    if (l.length === 0) continue;
    if (k === 0 && /^text;label(_name)?$/.test(l)) continue;
    const cut = l.lastIndexOf(";");
    if (cut < 0) throw new DatasetError(`line ${k + 1}: no ';' separating text and label`, { file, field: "label" });
    out.push({ value: { text: l.slice(0, cut), label: l.slice(cut + 1) }, where: `line ${k + 1}` });
  }
  return out;
}

/** A JSON array of objects, or an object holding one under `recordsField` (default: `instances`). */
export function readJson(file: string, recordsField?: string): RawRecord[] {
  const text = readText(file);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new DatasetError(`invalid JSON (${(err as Error).message})`, { file }, { cause: err });
  }
  let list: unknown = doc;
  let field: string | undefined;
  if (!Array.isArray(doc)) {
    field = recordsField ?? "instances";
    list = doc !== null && typeof doc === "object" ? getPath(doc, field) : undefined;
    if (!Array.isArray(list)) {
      throw new DatasetError("expected a JSON array of records, or an object with an array of records", { file, field });
    }
  }
  return (list as unknown[]).map((value, row) => {
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new DatasetError(`row ${row}: expected an object`, { file, field });
    }
    return { value: value as Record<string, unknown>, where: `row ${row}` };
  });
}

/** Parquet through hyparquet (pure JS, every codec parquet writers use by default). */
export async function readParquet(file: string): Promise<RawRecord[]> {
  const { asyncBufferFromFile, parquetReadObjects } = await import("hyparquet");
  let rows: Record<string, unknown>[];
  try {
    const buffer = await asyncBufferFromFile(file);
    rows = (await parquetReadObjects({ file: buffer })) as Record<string, unknown>[];
  } catch (err) {
    if (err instanceof DatasetError) throw err;
    throw new DatasetError(`cannot read parquet: ${(err as Error).message}`, { file }, { cause: err });
  }
  return rows.map((value, row) => ({ value, where: `row ${row}` }));
}

/** Reads `a.b.c` from nested objects; undefined when any step is missing. */
export function getPath(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const key of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

export async function readRecords(file: string, format: DatasetFormat, recordsField?: string): Promise<RawRecord[]> {
  switch (format) {
    case "jsonl":
      return readJsonl(file);
    case "csv":
      return readCsv(file);
    case "tsv":
      return readTsv(file);
    case "text-semicolon":
      return readTextSemicolon(file);
    case "json":
      return readJson(file, recordsField);
    case "parquet":
      return readParquet(file);
  }
}
