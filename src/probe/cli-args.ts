/** Flag parsing shared by the probe commands (train, eval, classify). */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { InvalidArgumentError } from "../errors.js";

/** Parsed flags: `s(name)` for string flags, `b(name)` for boolean ones. */
export class Flags {
  constructor(private readonly values: Record<string, unknown>) {}
  s(name: string): string | undefined {
    const v = this.values[name];
    return typeof v === "string" ? v : undefined;
  }
  b(name: string): boolean {
    return this.values[name] === true;
  }
}

export function parseFlags(argv: string[], options: NonNullable<ParseArgsConfig["options"]>, usage: string): Flags {
  try {
    return new Flags(parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values);
  } catch (err) {
    throw new InvalidArgumentError(`${(err as Error).message}\n\n${usage}`);
  }
}

/** A numeric flag, or InvalidArgumentError naming it. */
export function numFlag(name: string, value: string | undefined, o: { int?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (value === undefined) return undefined;
  const n = value.trim() === "" ? NaN : Number(value);
  if (!Number.isFinite(n) || (o.int === true && !Number.isInteger(n)) || (o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max)) {
    const range = o.min !== undefined || o.max !== undefined ? ` in [${o.min ?? "-∞"}, ${o.max ?? "∞"}]` : "";
    throw new InvalidArgumentError(`expects ${o.int === true ? "an integer" : "a number"}${range}, got '${value}'`, { field: `--${name}` });
  }
  return n;
}

export function oneOf<T extends string>(name: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw new InvalidArgumentError(`expects one of ${allowed.join("|")}, got '${value}'`, { field: `--${name}` });
  return value as T;
}

export function required<T>(name: string, value: T | undefined, usage: string): T {
  if (value === undefined) throw new InvalidArgumentError(`--${name} is required\n\n${usage}`, { field: `--${name}` });
  return value;
}
