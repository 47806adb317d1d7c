/**
 * The JSON Schema of probe.json, checked with Ajv (a maintained validator) on every load: a hand-edited or
 * corrupted file is a ProbeError naming the field, never a probe that silently does something else.
 * Cross-field rules a schema cannot say (label count = classes, layer < L+1) are checked after it.
 */
import { Ajv, type ErrorObject } from "ajv";
import { ProbeError } from "../errors.js";

const positiveInt = { type: "integer", minimum: 1 } as const;
const unit = { type: "number", minimum: 0, maximum: 1 } as const;

export const PROBE_SCHEMA = {
  type: "object",
  required: ["format", "version", "config", "shape", "labelNames", "model", "parameterCount", "createdAt"],
  properties: {
    format: { const: "onepass-probe" },
    version: { const: 1 },
    config: {
      type: "object",
      required: ["kind"],
      additionalProperties: false,
      properties: {
        kind: { enum: ["pooling", "scoring", "mha", "fixed"] },
        pool: { enum: ["mean", "max"] },
        heads: positiveInt,
        downcast: positiveInt,
        layer: { type: "integer", minimum: 0 },
        token: { enum: ["last", "mean", "max"] },
        standardize: { type: "boolean" },
      },
    },
    shape: {
      type: "object",
      required: ["layers", "dim", "classes"],
      additionalProperties: false,
      properties: { layers: positiveInt, dim: positiveInt, classes: { type: "integer", minimum: 2, maximum: 1000 } },
    },
    labelNames: { type: "array", items: { type: "string", minLength: 1 }, uniqueItems: true, minItems: 2 },
    model: {
      type: "object",
      required: ["fingerprint", "blocks", "dim"],
      properties: { fingerprint: { type: "string", minLength: 1 }, name: { type: "string" }, blocks: { type: "integer", minimum: 0 }, dim: positiveInt },
    },
    threshold: unit,
    hyper: { type: "object" },
    validation: { type: "object" },
    tokenization: {
      type: "object",
      required: ["addBos", "template", "maxTokens"],
      additionalProperties: false,
      properties: {
        addBos: { type: "boolean" },
        template: { enum: ["raw", "chat"] },
        maxTokens: { anyOf: [positiveInt, { type: "null" }] },
        target: { enum: ["prompt", "response"] },
      },
    },
    seeds: { type: "object" },
    parameterCount: { type: "object" },
    createdAt: { type: "string" },
    weightsSha256: { type: "string", pattern: "^[0-9a-f]{64}$" },
  },
} as const;

const validate = new Ajv({ allErrors: false, strict: true }).compile(PROBE_SCHEMA);

function describe(e: ErrorObject): { field: string; message: string } {
  const path = e.instancePath.replace(/^\//, "").replace(/\//g, ".");
  if (e.keyword === "additionalProperties") {
    const extra = (e.params as { additionalProperty: string }).additionalProperty;
    return { field: path === "" ? extra : `${path}.${extra}`, message: "unknown field" };
  }
  if (e.keyword === "required") {
    const missing = (e.params as { missingProperty: string }).missingProperty;
    return { field: path === "" ? missing : `${path}.${missing}`, message: "is required" };
  }
  if (e.keyword === "enum") return { field: path, message: `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(", ")}` };
  if (e.keyword === "uniqueItems") return { field: path, message: "has duplicate names" };
  const item = /^(.*)\.(\d+)$/.exec(path); // an array element: name the array, say which item
  if (item !== null) return { field: item[1], message: `item ${item[2]} ${e.message ?? e.keyword}` };
  return { field: path === "" ? "(root)" : path, message: e.message ?? e.keyword };
}

/** Throws ProbeError (file, field) unless `value` is a valid probe.json. */
export function validateProbeJson(value: unknown, file: string): void {
  if (!validate(value)) {
    const { field, message } = describe(validate.errors![0]);
    throw new ProbeError(message, { file, field });
  }
  const o = value as { shape: { layers: number; classes: number }; labelNames: string[]; config: { layer?: number }; model: { blocks: number; dim: number }; threshold?: number };
  if (o.labelNames.length !== o.shape.classes) throw new ProbeError(`${o.labelNames.length} label names for ${o.shape.classes} classes`, { file, field: "labelNames" });
  if (o.config.layer !== undefined && o.config.layer >= o.shape.layers) throw new ProbeError(`layer ${o.config.layer} does not exist (0..${o.shape.layers - 1})`, { file, field: "config.layer" });
  if (o.model.blocks + 1 !== o.shape.layers) throw new ProbeError(`model.blocks ${o.model.blocks} disagrees with shape.layers ${o.shape.layers} (L+1 hidden layers)`, { file, field: "model.blocks" });
  if (o.threshold !== undefined && o.shape.classes !== 2) throw new ProbeError("a threshold applies to binary probes only", { file, field: "threshold" });
}
