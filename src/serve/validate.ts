/**
 * Request-body checks: every wrong type or value becomes a BadRequestError naming the field (OpenAI's `param`),
 * and every OpenAI feature onepass does not implement is refused by name instead of being silently ignored.
 */
import type { ChatMessage } from "../tokenizer/types.js";
import { BadRequestError } from "./errors.js";
import type { OnepassRequestOptions } from "./protocol.js";

export type Body = Record<string, unknown>;

export function describe(v: unknown): string {
  if (v === null) return "null";
  if (v === undefined) return "nothing (the field is missing)";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return v.length > 40 ? `a string of ${v.length} characters` : `"${v}"`;
  if (typeof v === "number") return String(v);
  return typeof v === "object" ? "an object" : typeof v === "boolean" ? String(v) : `a ${typeof v}`;
}

export function expectBody(body: unknown): Body {
  if (body === undefined || body === null) throw new BadRequestError("the request needs a JSON object body", undefined, "missing_body");
  if (typeof body !== "object" || Array.isArray(body)) throw new BadRequestError(`the request body must be a JSON object, got ${describe(body)}`);
  return body as Body;
}

export function optString(b: Body, field: string, param = field): string | undefined {
  const v = b[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new BadRequestError(`${param} must be a string, got ${describe(v)}`, param, "invalid_type");
  return v;
}

export function optBool(b: Body, field: string, param = field): boolean | undefined {
  const v = b[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw new BadRequestError(`${param} must be true or false, got ${describe(v)}`, param, "invalid_type");
  return v;
}

export function optNumber(b: Body, field: string, o: { min?: number; max?: number; int?: boolean; minExclusive?: boolean } = {}, param = field): number | undefined {
  const v = b[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw new BadRequestError(`${param} must be a number, got ${describe(v)}`, param, "invalid_type");
  if (o.int === true && !Number.isSafeInteger(v)) throw new BadRequestError(`${param} must be an integer, got ${v}`, param, "invalid_type");
  if (o.min !== undefined && (o.minExclusive === true ? v <= o.min : v < o.min)) {
    throw new BadRequestError(`${param} must be ${o.minExclusive === true ? ">" : "≥"} ${o.min}, got ${v}`, param);
  }
  if (o.max !== undefined && v > o.max) throw new BadRequestError(`${param} must be ≤ ${o.max}, got ${v}`, param);
  return v;
}

/** `stop`: a string or up to 4 non-empty strings. */
export function optStop(b: Body): string[] | undefined {
  const v = b.stop;
  if (v === undefined || v === null) return undefined;
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== "string")) throw new BadRequestError(`stop must be a string or an array of strings, got ${describe(v)}`, "stop", "invalid_type");
  if (list.length > 4) throw new BadRequestError(`stop takes at most 4 strings, got ${list.length}`, "stop");
  if (list.some((s) => s.length === 0)) throw new BadRequestError("stop strings must not be empty", "stop");
  return list as string[];
}

/** Fields OpenAI accepts that this server does not implement: refused when set to anything but their default. */
const UNSUPPORTED: Array<[field: string, isDefault: (v: unknown) => boolean]> = [
  ["n", (v) => v === 1],
  ["best_of", (v) => v === 1],
  ["tools", (v) => Array.isArray(v) && v.length === 0],
  ["tool_choice", (v) => v === "none"],
  ["functions", (v) => Array.isArray(v) && v.length === 0],
  ["function_call", (v) => v === "none"],
  ["parallel_tool_calls", () => false],
  ["logprobs", (v) => v === false || v === 0],
  ["top_logprobs", (v) => v === 0],
  ["logit_bias", (v) => v !== null && typeof v === "object" && Object.keys(v).length === 0],
  ["presence_penalty", (v) => v === 0],
  ["frequency_penalty", (v) => v === 0],
  ["response_format", (v) => v !== null && typeof v === "object" && (v as { type?: unknown }).type === "text"],
  ["echo", (v) => v === false],
  ["suffix", () => false],
  ["audio", () => false],
  ["modalities", (v) => Array.isArray(v) && v.length === 1 && v[0] === "text"],
  ["prediction", () => false],
];

export function refuseUnsupported(b: Body): void {
  for (const [field, isDefault] of UNSUPPORTED) {
    const v = b[field];
    if (v === undefined || v === null || isDefault(v)) continue;
    const hint = field === "n" ? " (this server returns one choice per request: n must be 1)" : "";
    throw new BadRequestError(`${field} = ${JSON.stringify(v)?.slice(0, 60)} is not supported by this server${hint}`, field, "unsupported_parameter");
  }
}

/** `messages` → the engine's chat turns (text content only; "developer" is a system turn). */
export function parseMessages(b: Body): ChatMessage[] {
  const v = b.messages;
  if (v === undefined || v === null) throw new BadRequestError("messages is required", "messages", "missing_required_parameter");
  if (!Array.isArray(v)) throw new BadRequestError(`messages must be an array, got ${describe(v)}`, "messages", "invalid_type");
  if (v.length === 0) throw new BadRequestError("messages must hold at least one message", "messages");
  return v.map((m, i) => {
    const at = `messages[${i}]`;
    if (m === null || typeof m !== "object" || Array.isArray(m)) throw new BadRequestError(`${at} must be an object, got ${describe(m)}`, at, "invalid_type");
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== "string") throw new BadRequestError(`${at}.role must be a string, got ${describe(role)}`, `${at}.role`, "invalid_type");
    if (!["system", "developer", "user", "assistant"].includes(role)) {
      throw new BadRequestError(`${at}.role '${role.slice(0, 40)}' is not supported (system, developer, user, assistant)`, `${at}.role`);
    }
    let text: string;
    if (typeof content === "string") text = content;
    else if (Array.isArray(content)) {
      text = content
        .map((part, j) => {
          const p = part as { type?: unknown; text?: unknown } | null;
          if (p === null || typeof p !== "object" || p.type !== "text" || typeof p.text !== "string") {
            throw new BadRequestError(`${at}.content[${j}] must be a text part {type: "text", text}`, `${at}.content[${j}]`, "invalid_type");
          }
          return p.text;
        })
        .join("");
    } else if (content === null && role === "assistant") text = "";
    else throw new BadRequestError(`${at}.content must be a string or an array of text parts, got ${describe(content)}`, `${at}.content`, "invalid_type");
    return { role: role === "developer" ? "system" : role, content: text };
  });
}

/** The `onepass` request field; `knownResponse`: the response probes' names. */
export function parseOnepass(b: Body, known: readonly string[], knownResponse: readonly string[] = [], param = "onepass"): OnepassRequestOptions {
  const v = b.onepass;
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v)) throw new BadRequestError(`${param} must be an object, got ${describe(v)}`, param, "invalid_type");
  const o = v as Body;
  const out: OnepassRequestOptions = {};
  if (o.probes !== undefined && o.probes !== null) out.probes = probeNames(o.probes, known, `${param}.probes`);
  const lw = optBool(o, "layer_weights", `${param}.layer_weights`);
  if (lw !== undefined) out.layer_weights = lw;
  if (o.response_probes !== undefined && o.response_probes !== null) out.response_probes = probeNames(o.response_probes, knownResponse, `${param}.response_probes`, "response probe");
  return out;
}

export function probeNames(v: unknown, known: readonly string[], param: string, what = "probe"): string[] {
  if (!Array.isArray(v) || v.some((n) => typeof n !== "string")) throw new BadRequestError(`${param} must be an array of ${what} names, got ${describe(v)}`, param, "invalid_type");
  for (const n of v as string[]) {
    if (!known.includes(n)) {
      throw new BadRequestError(`unknown ${what} '${n.slice(0, 60)}' (loaded: ${known.length > 0 ? known.join(", ") : "none"})`, param, "unknown_probe");
    }
  }
  return [...new Set(v as string[])];
}

/** `input` of /v1/moderations and /v1/classify: a string or a non-empty array of at most `max` strings. */
export function parseInputs(b: Body, max: number): string[] {
  const v = b.input;
  if (v === undefined || v === null) throw new BadRequestError("input is required", "input", "missing_required_parameter");
  if (typeof v === "string") return [v];
  if (!Array.isArray(v)) throw new BadRequestError(`input must be a string or an array of strings, got ${describe(v)}`, "input", "invalid_type");
  if (v.length === 0) throw new BadRequestError("input must hold at least one string", "input");
  if (v.length > max) throw new BadRequestError(`input holds ${v.length} strings, at most ${max} per request`, "input");
  v.forEach((s, i) => {
    if (typeof s !== "string") throw new BadRequestError(`input[${i}] must be a string, got ${describe(s)}`, `input[${i}]`, "invalid_type");
  });
  return v as string[];
}
