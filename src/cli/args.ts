/**
 * Flag parsing shared by every CLI command. Each helper throws InvalidArgumentError naming the flag
 * (`field --name`), which main.ts prints as `onepass: field --name: ...` with exit status 1.
 *
 * Typical command:
 *
 *   const OPTIONS = { model: { type: "string" }, limit: { type: "string" }, json: { type: "boolean" } } as const;
 *   const flags = parseFlags(argv, OPTIONS, usage);   // flags.model: string | undefined, flags.json: boolean | undefined
 *   const model = required("model", flags.model);      // string, or "--model is required"
 *   const limit = numberFlag("limit", flags.limit, { int: true, min: 1 });   // number | undefined
 *   const mode = oneOf("mode", flags.mode, ["full", "summary"] as const);   // "full" | "summary" | undefined
 *
 * Numbers are passed as string flags and checked with numberFlag, so "--limit ten" fails with a message
 * naming --limit instead of silently becoming NaN.
 */
import { availableParallelism } from "node:os";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { InvalidArgumentError, OnepassError } from "../errors.js";

/** The `options` of node:util parseArgs: `{ name: { type: "string" | "boolean", multiple?, short? } }`. */
export type FlagOptions = NonNullable<ParseArgsConfig["options"]>;

/** The parsed values for `options` O, as node:util parseArgs types them. */
export type FlagValues<O extends FlagOptions> = ReturnType<typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>>["values"];

/**
 * Parse `argv` strictly (unknown flags and positionals are errors) into values typed from `options`
 * (string flags → string | undefined, boolean flags → boolean | undefined, `multiple` → arrays).
 * A parse error becomes InvalidArgumentError with `usage` appended.
 */
export function parseFlags<const O extends FlagOptions>(argv: string[], options: O, usage: string): FlagValues<O> {
  try {
    return parseArgs({ args: joinNegativeNumbers(argv, options), options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new InvalidArgumentError(`${(err as Error).message.split("\n")[0]}${seeHelp(usage)}`);
  }
}

/**
 * `--limit -1` → `--limit=-1` for string flags, so that a negative number reaches numberFlag (which says what
 * range is allowed) instead of parseArgs' "argument is ambiguous" message.
 */
function joinNegativeNumbers(argv: string[], options: FlagOptions): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], next = argv[i + 1];
    const name = a.startsWith("--") && !a.includes("=") ? a.slice(2) : undefined;
    if (name !== undefined && options[name]?.type === "string" && next !== undefined && /^-\d|^-\.\d|^-Infinity$/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** " (see onepass CMD --help)" from a usage text "usage: onepass CMD ...": errors stay one line. */
function seeHelp(usage: string): string {
  const m = /usage: (onepass \S+)/.exec(usage);
  return m !== null ? ` (see ${m[1]} --help)` : "";
}

/** `value`, or InvalidArgumentError "--name is required" (followed by `usage` when given). */
export function required<T>(name: string, value: T | undefined, usage?: string): T {
  if (value === undefined) throw new InvalidArgumentError(`--${name} is required${usage !== undefined ? seeHelp(usage) : ""}`, { field: `--${name}` });
  return value;
}

export interface NumberFlagOptions {
  /** Require an integer. */
  int?: boolean;
  /** Must be strictly greater than this. */
  above?: number;
  /** Smallest allowed value (inclusive). */
  min?: number;
  /** Largest allowed value (inclusive). */
  max?: number;
}

/** The number in a string flag (undefined when the flag is absent), or InvalidArgumentError naming the flag. */
export function numberFlag(name: string, value: string | undefined, o: NumberFlagOptions = {}): number | undefined {
  if (value === undefined) return undefined;
  const n = value.trim() === "" ? NaN : Number(value);
  if (!Number.isFinite(n) || (o.int === true && !Number.isInteger(n)) || (o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max) || (o.above !== undefined && !(n > o.above))) {
    const range = o.above !== undefined ? ` in (${o.above}, ${o.max ?? "∞"}]` : o.min !== undefined || o.max !== undefined ? ` in [${o.min ?? "-∞"}, ${o.max ?? "∞"}]` : "";
    throw new InvalidArgumentError(`expects ${o.int === true ? "an integer" : "a number"}${range}, got '${value}'`, { field: `--${name}` });
  }
  return n;
}

/** A string flag restricted to `allowed` (undefined when absent), or InvalidArgumentError "--name must be a, b or c". */
export function oneOf<T extends string>(name: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) {
    const list = allowed.length > 1 ? `${allowed.slice(0, -1).join(", ")} or ${allowed[allowed.length - 1]}` : String(allowed[0]);
    throw new InvalidArgumentError(`--${name} must be ${list}, got '${value}'`, { field: `--${name}` });
  }
  return value as T;
}

/**
 * `--threads N` and `--device cpu|cuda|auto`, checked, as Engine.load options; an absent flag is left out so
 * the engine's default applies.
 */
export function engineFlags(values: { threads?: string; device?: string }): { threads?: number; device?: "cpu" | "cuda" | "auto" } {
  // More threads than CPUs only slows ORT down (1000 took 38 s to load on 2 cores): bounded by the machine.
  const threads = numberFlag("threads", values.threads, { int: true, min: 1, max: availableParallelism() });
  const device = oneOf("device", values.device, ["cpu", "cuda", "auto"] as const);
  return { ...(threads !== undefined ? { threads } : {}), ...(device !== undefined ? { device } : {}) };
}

/**
 * `--stop "\n\n"` as a shell passes it (backslash, n): the escapes \n \t \r \\ \" \xHH and \uHHHH become the
 * characters they name, so a stop string can hold newlines; any other backslash stays as it is.
 */
export function unescapeFlag(value: string): string {
  return value.replace(/\\(n|t|r|\\|"|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})/g, (_, e: string) => {
    switch (e[0]) {
      case "n": return "\n";
      case "t": return "\t";
      case "r": return "\r";
      case "x": case "u": return String.fromCharCode(parseInt(e.slice(1), 16));
      default: return e; // \\ → \, \" → "
    }
  });
}

/** Library field → the CLI flag that sets it, for messages about a request's options. */
const FLAG_OF: Record<string, string> = { maxTokens: "--max-tokens", topP: "--top-p", topK: "--top-k", temperature: "--temperature", seed: "--seed", stop: "--stop" };

/** `err` with library option names (maxTokens, topP, ...) replaced by the flags the user typed. */
export function inFlagTerms(err: unknown): unknown {
  if (!(err instanceof OnepassError)) return err;
  const names = Object.keys(FLAG_OF).filter((k) => new RegExp(`\\b${k}\\b`).test(err.message) || err.field === k);
  if (names.length === 0) return err;
  let message = err.message;
  for (const k of names) message = message.replace(new RegExp(`\\b${k}\\b`, "g"), FLAG_OF[k]);
  const Ctor = err.constructor as new (m: string, w?: object, o?: { cause?: unknown }) => OnepassError;
  const copy = new Ctor("", {}, { cause: err });
  const field = err.field !== undefined && FLAG_OF[err.field] !== undefined ? FLAG_OF[err.field] : err.field;
  Object.defineProperties(copy, { message: { value: message }, file: { value: err.file }, field: { value: field }, offset: { value: err.offset } });
  return copy;
}
