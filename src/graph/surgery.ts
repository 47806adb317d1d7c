/**
 * Graph surgery on existing decoder exports (Optimum / onnx-community / ORT GenAI): find the residual stream by
 * graph analysis and add ONE stacked output `hidden_states` [L+1, batch, T, d] in the Hugging Face
 * `output_hidden_states` convention (0 = embedding Gather output, l = residual stream after block l, L = final
 * norm output).
 *
 * Fidelity: the original bytes are never re-encoded. The new nodes, the axes constant and the output are encoded
 * on their own and spliced into the end of the model's `graph` field (protobuf concatenates repeated fields, so
 * parsers see them appended to graph.node / initializer / output). Every other byte of the file, external-data
 * references included, stays exactly as it was, so the tapped model must sit in the same folder as the original
 * (or be loaded from memory with the external-data folder given to ORT).
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import {
  ModelProtoSchema,
  NodeProtoSchema,
  TensorProtoSchema,
  TensorProto_DataType,
  ValueInfoProtoSchema,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from "onnx-buf";
import { GraphError } from "../errors.js";
import { MS_DOMAIN, nodeProto, valueInfo } from "../onnx/proto.js";

export const HIDDEN_STATES_OUTPUT = "hidden_states";

/** How a residual step was recognised (for reports and tests). */
export type ResidualStepKind = "add" | "skip-simplified-layer-norm";
/** How the final norm was recognised. */
export type FinalNormKind = "skip-simplified-layer-norm" | "simplified-layer-norm" | "rms-normalization" | "plain-ops";

export interface ResidualStream {
  /** Number of decoder blocks L found (= residual steps / 2). */
  blocks: number;
  /** L + 1 tensor names in hidden-state order: embedding, block 1..L-1 outputs, final norm output. */
  taps: string[];
  /** The embedding lookup node's output (= taps[0]). */
  embedding: string;
  /** Element type (TensorProto.DataType) of the embedding table when it is an initializer, else undefined. */
  embeddingElemType?: number;
  stepKinds: ResidualStepKind[];
  finalNorm: FinalNormKind;
}

/** Index over a graph: producers and consumers of every tensor name. */
class GraphIndex {
  readonly producer = new Map<string, NodeProto>();
  readonly consumers = new Map<string, NodeProto[]>();
  readonly initializers = new Map<string, number>(); // name → data type
  constructor(readonly graph: GraphProto) {
    for (const t of graph.initializer) this.initializers.set(t.name, t.dataType);
    for (const n of graph.node) {
      for (const o of n.output) if (o !== "") this.producer.set(o, n);
      for (const i of n.input) {
        if (i === "") continue;
        const list = this.consumers.get(i);
        if (list === undefined) this.consumers.set(i, [n]);
        else if (!list.includes(n)) list.push(n);
      }
    }
  }
  consumersOf(name: string, op?: string): NodeProto[] {
    const all = this.consumers.get(name) ?? [];
    return op === undefined ? all : all.filter((n) => n.opType === op);
  }
  /** A constant: an initializer, or the output of a Constant node. */
  isConstant(name: string): boolean {
    return this.initializers.has(name) || this.producer.get(name)?.opType === "Constant";
  }
  hasName(name: string): boolean {
    return this.initializers.has(name) || this.producer.has(name) || this.graph.input.some((v) => v.name === name);
  }
}

const isMsOrDefault = (n: NodeProto): boolean => n.domain === "" || n.domain === MS_DOMAIN || n.domain === "ai.onnx";

/**
 * Finds the residual stream of a Llama-family decoder graph. `file` names the model in errors; `expectedLayers`
 * (config.json num_hidden_layers) is checked when given.
 */
export function findResidualStream(graph: GraphProto, file: string, expectedLayers?: number): ResidualStream {
  const g = new GraphIndex(graph);
  const { embedding, elemType } = findEmbedding(g, file);

  // Follow the residual chain: each step is a residual Add (two computed operands) or a
  // SkipSimplifiedLayerNormalization whose 4th output is the residual sum.
  const chain: string[] = [embedding]; // chain[k] = residual stream after k steps
  const stepKinds: ResidualStepKind[] = [];
  let lastSkip: NodeProto | undefined;
  for (;;) {
    const cur = chain[chain.length - 1];
    if (cur === "") break; // a final Skip node that does not output its residual sum
    const steps = (g.consumers.get(cur) ?? []).filter(
      (n) =>
        (n.opType === "Add" && isMsOrDefault(n) && n.input.length === 2 && n.input.every((i) => !g.isConstant(i))) ||
        (n.opType === "SkipSimplifiedLayerNormalization" && (n.input[0] === cur || n.input[1] === cur)),
    );
    if (steps.length === 0) break;
    if (steps.length > 1) {
      throw new GraphError(
        `residual stream is ambiguous after ${stepKinds.length} steps: tensor ${cur} feeds ${steps.length} residual candidates (${steps.map((n) => n.name || n.opType).join(", ")})`,
        { file, field: cur },
      );
    }
    const step = steps[0];
    if (step.opType === "Add") {
      chain.push(step.output[0]);
      stepKinds.push("add");
      lastSkip = undefined;
    } else {
      chain.push(step.output[3] ?? "");
      stepKinds.push("skip-simplified-layer-norm");
      lastSkip = step;
    }
  }

  const steps = stepKinds.length;
  if (steps === 0) {
    throw new GraphError(`no residual Add / SkipSimplifiedLayerNormalization chain starts at the embedding output ${embedding}`, { file, field: embedding });
  }
  if (steps % 2 !== 0) {
    throw new GraphError(`residual chain from ${embedding} has ${steps} steps; a decoder block has 2 (attention, MLP)`, { file, field: embedding });
  }
  const blocks = steps / 2;
  if (expectedLayers !== undefined && blocks !== expectedLayers) {
    throw new GraphError(`found ${blocks} decoder blocks on the residual chain, config says num_hidden_layers = ${expectedLayers}`, {
      file,
      field: "num_hidden_layers",
    });
  }

  // Final norm: a fused Skip node's first output, or a norm applied to the chain's last tensor.
  let finalNormOut: string | undefined;
  let finalNorm: FinalNormKind;
  if (lastSkip !== undefined) {
    finalNormOut = lastSkip.output[0];
    finalNorm = "skip-simplified-layer-norm";
  } else {
    const found = findNormOutput(g, chain[steps]);
    if (found === undefined) {
      throw new GraphError(
        `no final RMSNorm (SimplifiedLayerNormalization, RMSNormalization or Pow→ReduceMean→Add→Sqrt→Div/Reciprocal→Mul) applied to the last residual tensor ${chain[steps]}`,
        { file, field: chain[steps] },
      );
    }
    finalNormOut = found.output;
    finalNorm = found.kind;
  }
  if (!finalNormOut) throw new GraphError(`final norm node does not name its output`, { file, field: chain[steps] });

  const taps: string[] = [embedding];
  for (let l = 1; l < blocks; l++) taps.push(chain[2 * l]);
  taps.push(finalNormOut);
  if (taps.some((t) => t === "")) throw new GraphError(`a block's residual output is unnamed (optional output omitted)`, { file });
  return { blocks, taps, embedding, embeddingElemType: elemType, stepKinds, finalNorm };
}

/** The token-embedding lookup: a Gather (or GatherBlockQuantized) whose indices come from `input_ids`. */
function findEmbedding(g: GraphIndex, file: string): { embedding: string; elemType?: number } {
  if (!g.graph.input.some((v) => v.name === "input_ids")) {
    throw new GraphError(`graph has no input named input_ids (inputs: ${g.graph.input.map((v) => v.name).join(", ")})`, { file, field: "graph.input" });
  }
  // input_ids may pass through shape-preserving ops (Cast to int32, Identity, Reshape) before the lookup.
  const ids = new Set(["input_ids"]);
  const queue = ["input_ids"];
  const gathers: NodeProto[] = [];
  while (queue.length > 0) {
    const t = queue.shift()!;
    for (const n of g.consumersOf(t)) {
      if ((n.opType === "Gather" || n.opType === "GatherBlockQuantized") && n.input[1] === t) gathers.push(n);
      else if ((n.opType === "Cast" || n.opType === "Identity" || n.opType === "Reshape") && n.input[0] === t && !ids.has(n.output[0])) {
        ids.add(n.output[0]);
        queue.push(n.output[0]);
      }
    }
  }
  if (gathers.length !== 1) {
    throw new GraphError(
      gathers.length === 0
        ? `no embedding lookup (Gather with input_ids as indices) found`
        : `${gathers.length} Gather nodes take input_ids as indices (${gathers.map((n) => n.name).join(", ")}); cannot tell which is the embedding`,
      { file, field: "input_ids" },
    );
  }
  const gather = gathers[0];
  const table = gather.input[0];
  const elemType = gather.opType === "Gather" ? g.initializers.get(table) : undefined;
  return { embedding: gather.output[0], elemType };
}

/** The output of an RMSNorm applied to x, in any of the recognised forms. */
function findNormOutput(g: GraphIndex, x: string): { output: string; kind: FinalNormKind } | undefined {
  for (const n of g.consumersOf(x)) {
    if (n.input[0] !== x) continue;
    if (n.opType === "RMSNormalization" && (n.domain === "" || n.domain === "ai.onnx")) return { output: n.output[0], kind: "rms-normalization" };
    if (n.opType === "SimplifiedLayerNormalization" && isMsOrDefault(n)) return { output: n.output[0], kind: "simplified-layer-norm" };
  }
  const plain = findPlainRmsNorm(g, x);
  return plain === undefined ? undefined : { output: plain, kind: "plain-ops" };
}

/**
 * Plain-op RMSNorm as PyTorch exports it: [Cast] → Pow(·,2) | Mul(·,·) → ReduceMean → Add(eps) → Sqrt →
 * (Div(x, s) | Reciprocal(s) or Div(1, s) → Mul(x, r)) → [Cast] → Mul(weight). Returns the last tensor.
 */
function findPlainRmsNorm(g: GraphIndex, x: string): string | undefined {
  const starts = [x, ...g.consumersOf(x, "Cast").map((n) => n.output[0])];
  for (const xc of starts) {
    const squares = [
      ...g.consumersOf(xc, "Pow").filter((n) => n.input[0] === xc && g.isConstant(n.input[1])),
      ...g.consumersOf(xc, "Mul").filter((n) => n.input[0] === xc && n.input[1] === xc),
    ];
    for (const sq of squares) {
      const mean = g.consumersOf(sq.output[0], "ReduceMean")[0];
      if (mean === undefined) continue;
      const addEps = g.consumersOf(mean.output[0], "Add").find((n) => n.input.some((i) => g.isConstant(i)));
      if (addEps === undefined) continue;
      const sqrt = g.consumersOf(addEps.output[0], "Sqrt")[0];
      if (sqrt === undefined) continue;
      const s = sqrt.output[0];
      let normed: string | undefined;
      for (const n of g.consumersOf(s)) {
        if (n.opType === "Div" && n.input[0] === xc && n.input[1] === s) normed = n.output[0];
        else if ((n.opType === "Reciprocal" && n.input[0] === s) || (n.opType === "Div" && n.input[1] === s && g.isConstant(n.input[0]))) {
          const r = n.output[0];
          const mul = g.consumersOf(r, "Mul").find((m) => m.input.includes(xc));
          if (mul !== undefined) normed = mul.output[0];
        }
        if (normed !== undefined) break;
      }
      if (normed === undefined) continue;
      // Optional cast back to the input dtype, then the (optional) weight.
      const afterCast = g.consumersOf(normed, "Cast")[0]?.output[0] ?? normed;
      const weighted = g.consumersOf(afterCast, "Mul").find((m) => m.input.some((i) => i !== afterCast && g.isConstant(i)));
      return weighted !== undefined ? weighted.output[0] : afterCast;
    }
  }
  return undefined;
}

export interface TapOptions {
  /** The model's path, for error messages. */
  file?: string;
  /** config.json num_hidden_layers: the residual chain must have exactly this many blocks. */
  blocks?: number;
  /** Model width d, written into the output's declared shape (symbolic when absent). */
  dim?: number;
  /** Name of the new output (default "hidden_states"). */
  outputName?: string;
}

export interface TappedModel {
  /** The whole tapped model file. */
  bytes: Uint8Array;
  stream: ResidualStream;
  outputName: string;
}

/** Opset version of the default domain. */
function defaultOpset(model: ModelProto): number {
  const op = model.opsetImport.find((o) => o.domain === "" || o.domain === "ai.onnx");
  return op === undefined ? 1 : Number(op.version);
}

/**
 * Adds the stacked hidden-state output to a serialized ModelProto. The returned bytes are the original bytes
 * with the new nodes spliced into the graph field; nothing else changes.
 */
export function addHiddenStateTaps(modelBytes: Uint8Array, options: TapOptions = {}): TappedModel {
  const file = options.file ?? "<model bytes>";
  const outputName = options.outputName ?? HIDDEN_STATES_OUTPUT;
  let model: ModelProto;
  try {
    model = fromBinary(ModelProtoSchema, modelBytes);
  } catch (e) {
    throw new GraphError(`not an ONNX ModelProto: ${(e as Error).message}`, { file }, { cause: e });
  }
  const graph = model.graph;
  if (graph === undefined) throw new GraphError(`model has no graph`, { file, field: "graph" });
  const stream = findResidualStream(graph, file, options.blocks);
  const g = new GraphIndex(graph);
  if (g.hasName(outputName) || graph.output.some((o) => o.name === outputName)) {
    throw new GraphError(`the graph already has a tensor named ${outputName}`, { file, field: outputName });
  }

  // New names get a prefix no existing name has.
  let prefix = "onepass_taps";
  for (let i = 0; [...g.producer.keys(), ...g.initializers.keys()].some((n) => n.startsWith(prefix)); i++) prefix = `onepass_taps${i}`;

  const opset = defaultOpset(model);
  const needsCast = stream.embeddingElemType !== TensorProto_DataType.FLOAT;
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const axesName = `${prefix}/axes0`;
  if (opset >= 13) {
    initializers.push(
      create(TensorProtoSchema, { name: axesName, dataType: TensorProto_DataType.INT64, dims: [1n], rawData: new Uint8Array(8) }), // [1] = {0}
    );
  }
  const unsqueezed: string[] = [];
  stream.taps.forEach((tap, l) => {
    let t = tap;
    if (needsCast) {
      // Taps stay float32 whatever the model's dtype (Node has no Float16Array).
      const out = `${prefix}/cast_${l}`;
      nodes.push(nodeProto("Cast", [t], [out], { to: TensorProto_DataType.FLOAT }, `${prefix}/Cast_${l}`));
      t = out;
    }
    const out = `${prefix}/unsqueeze_${l}`; // [1, batch, T, d]
    nodes.push(
      opset >= 13
        ? nodeProto("Unsqueeze", [t, axesName], [out], {}, `${prefix}/Unsqueeze_${l}`)
        : nodeProto("Unsqueeze", [t], [out], { axes: [0] }, `${prefix}/Unsqueeze_${l}`),
    );
    unsqueezed.push(out);
  });
  nodes.push(nodeProto("Concat", unsqueezed, [outputName], { axis: 0 }, `${prefix}/Concat`)); // [L+1, batch, T, d]

  const dims = [stream.blocks + 1, "batch_size", "sequence_length", options.dim ?? "hidden_size"];
  const output = valueInfo(outputName, "float32", dims);

  // GraphProto fields: node = 1, initializer = 5, output = 12.
  const extra: number[][] = [];
  for (const n of nodes) extra.push(lengthDelimited(1, toBinary(NodeProtoSchema, n)));
  for (const t of initializers) extra.push(lengthDelimited(5, toBinary(TensorProtoSchema, t)));
  extra.push(lengthDelimited(12, toBinary(ValueInfoProtoSchema, output)));
  const bytes = spliceIntoField(modelBytes, 7, concatBytes(extra), file);
  return { bytes, stream, outputName };
}

/**
 * Taps an .onnx file and writes the result (atomically) to `dest`, which must be in the same folder as `src`
 * so the external-data references (relative to the model's folder) still resolve. Default dest:
 * `<src without .onnx>.taps.onnx`.
 */
export function tapOnnxFile(src: string, dest?: string, options: Omit<TapOptions, "file"> = {}): TappedModel & { path: string } {
  const out = dest ?? join(dirname(src), basename(src).replace(/\.onnx$/, "") + ".taps.onnx");
  if (dirname(out) !== dirname(src)) {
    throw new GraphError(`the tapped model must be written next to the original (${dirname(src)}) so its external data resolves`, { file: out });
  }
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(src);
  } catch (e) {
    throw new GraphError(`cannot read ONNX model: ${(e as Error).message}`, { file: src }, { cause: e });
  }
  const tapped = addHiddenStateTaps(bytes, { ...options, file: src });
  const tmp = `${out}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    writeFileSync(tmp, tapped.bytes);
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new GraphError(`cannot write tapped model: ${(e as Error).message}`, { file: out }, { cause: e });
  }
  return { ...tapped, path: out };
}

// ---- protobuf wire format helpers (only what the splice needs) ----

function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

function lengthDelimited(field: number, payload: Uint8Array): number[] {
  const head = [...varint(field * 8 + 2), ...varint(payload.length)];
  const out = new Array<number>(head.length + payload.length);
  for (let i = 0; i < head.length; i++) out[i] = head[i];
  for (let i = 0; i < payload.length; i++) out[head.length + i] = payload[i];
  return out;
}

function concatBytes(parts: number[][]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Reads a varint at `pos`; returns [value, next position]. */
function readVarint(buf: Uint8Array, pos: number, file: string): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new GraphError(`truncated varint`, { file, offset: pos });
    const b = buf[pos++];
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 0x80;
  }
  throw new GraphError(`malformed varint`, { file, offset: pos });
}

/**
 * Appends `payload` to the last occurrence of length-delimited top-level field `field` of `buf`, rewriting only
 * that field's length prefix.
 */
function spliceIntoField(buf: Uint8Array, field: number, payload: Uint8Array, file: string): Uint8Array {
  let pos = 0;
  let found: { tagStart: number; dataStart: number; dataEnd: number } | undefined;
  while (pos < buf.length) {
    const tagStart = pos;
    const [key, afterKey] = readVarint(buf, pos, file);
    const wire = key % 8;
    const num = Math.floor(key / 8);
    pos = afterKey;
    if (wire === 0) [, pos] = readVarint(buf, pos, file);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const [len, dataStart] = readVarint(buf, pos, file);
      pos = dataStart + len;
      if (num === field) found = { tagStart, dataStart, dataEnd: pos };
    } else throw new GraphError(`unsupported wire type ${wire} in field ${num}`, { file, offset: tagStart });
    if (pos > buf.length) throw new GraphError(`field ${num} runs past the end of the file`, { file, offset: tagStart });
  }
  if (found === undefined) throw new GraphError(`model has no graph field`, { file, field: "graph" });
  const head = Uint8Array.from([...varint(field * 8 + 2), ...varint(found.dataEnd - found.dataStart + payload.length)]);
  const out = new Uint8Array(found.tagStart + head.length + (found.dataEnd - found.dataStart) + payload.length + (buf.length - found.dataEnd));
  let o = 0;
  out.set(buf.subarray(0, found.tagStart), o);
  o += found.tagStart;
  out.set(head, o);
  o += head.length;
  out.set(buf.subarray(found.dataStart, found.dataEnd), o);
  o += found.dataEnd - found.dataStart;
  out.set(payload, o);
  o += payload.length;
  out.set(buf.subarray(found.dataEnd), o);
  return out;
}

/** decode → encode with onnx-buf (used by the fidelity tests and for callers that edit a model as objects). */
export function reencode<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array): Uint8Array {
  return toBinary(schema, fromBinary(schema, bytes) as MessageShape<Desc>);
}
