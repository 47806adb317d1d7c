/**
 * A small ONNX model builder over onnx-buf (ONNX 1.20 protobuf types). Initializers above a few KiB are written
 * as EXTERNAL DATA to `<model>.data` while the graph is built (so a multi-GB model never sits in one protobuf or
 * in memory at once); `finish()` writes `<model>` and renames both files into place atomically.
 */
import { closeSync, existsSync, openSync, readFileSync, renameSync, rmSync, writeSync, writeFileSync } from "node:fs";
import { basename } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  AttributeProtoSchema,
  AttributeProto_AttributeType,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  TensorProtoSchema,
  TensorProto_DataLocation,
  TensorProto_DataType,
  TensorShapeProtoSchema,
  TensorShapeProto_DimensionSchema,
  TypeProtoSchema,
  TypeProto_TensorSchema,
  ValueInfoProtoSchema,
  type AttributeProto,
  type GraphProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from "onnx-buf";
import { GraphError } from "../errors.js";

export type ElemType = "float32" | "float16" | "int64" | "int32" | "uint8" | "bool";
/** A dimension: a fixed size or a symbolic name ("T", "past", ...). */
export type Dim = number | string;

const DATA_TYPE: Record<ElemType, number> = {
  float32: TensorProto_DataType.FLOAT,
  float16: TensorProto_DataType.FLOAT16,
  int64: TensorProto_DataType.INT64,
  int32: TensorProto_DataType.INT32,
  uint8: TensorProto_DataType.UINT8,
  bool: TensorProto_DataType.BOOL,
};

/** Marks a float attribute (plain numbers are int attributes). */
export class FloatAttr {
  constructor(readonly value: number) {}
}
export const float = (v: number): FloatAttr => new FloatAttr(v);
/** Marks a graph attribute (the branches of If). */
export class GraphAttr {
  constructor(readonly graph: GraphProto) {}
}
export type Attr = number | number[] | string | FloatAttr | FloatAttr[] | GraphAttr;

/** Initializers at most this many bytes stay inline in the protobuf. */
const INLINE_LIMIT = 4096;
/** External tensors start at multiples of this (page size) so ORT may map them. */
const EXTERNAL_ALIGN = 4096;

export const MS_DOMAIN = "com.microsoft";

export class OnnxModelBuilder {
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly names = new Set<string>();
  private readonly dataTmp: string;
  private readonly dataName: string;
  private dataFd: number | undefined;
  private dataOffset = 0;
  private counter = 0;

  /** @param modelPath where `finish()` puts the model; its weights go to `modelPath + ".data"`. */
  constructor(readonly modelPath: string, readonly opset = 21, readonly msOpset = 1) {
    this.dataName = basename(modelPath) + ".data";
    this.dataTmp = `${modelPath}.data.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    this.dataFd = openSync(this.dataTmp, "w");
  }

  /** A fresh value name with the given prefix. */
  fresh(prefix: string): string {
    let name = `${prefix}_${this.counter++}`;
    while (this.names.has(name)) name = `${prefix}_${this.counter++}`;
    this.names.add(name);
    return name;
  }

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    this.names.add(name);
    return name;
  }

  output(name: string, type: ElemType, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, type, dims));
  }

  /** A constant tensor. Large ones go to the external data file. Returns its name. */
  initializer(name: string, type: ElemType, dims: number[], data: ArrayBufferView): string {
    if (this.dataFd === undefined) throw new GraphError("builder already finished", { file: this.modelPath });
    const count = dims.reduce((a, b) => a * b, 1);
    const bytesPer = type === "float32" || type === "int32" ? 4 : type === "int64" ? 8 : type === "float16" ? 2 : 1;
    if (data.byteLength !== count * bytesPer) {
      throw new GraphError(`initializer has ${data.byteLength} bytes, expected ${count * bytesPer} for [${dims}]`, {
        file: this.modelPath,
        field: name,
      });
    }
    this.names.add(name);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const t = create(TensorProtoSchema, { name, dataType: DATA_TYPE[type], dims: dims.map(BigInt) });
    if (data.byteLength <= INLINE_LIMIT) {
      t.rawData = new Uint8Array(bytes); // own copy, plain ArrayBuffer
    } else {
      const start = Math.ceil(this.dataOffset / EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
      if (start > this.dataOffset) writeSync(this.dataFd, new Uint8Array(start - this.dataOffset));
      let written = 0;
      while (written < bytes.length) written += writeSync(this.dataFd, bytes, written, bytes.length - written);
      this.dataOffset = start + bytes.length;
      t.dataLocation = TensorProto_DataLocation.EXTERNAL;
      t.externalData = [
        create(StringStringEntryProtoSchema, { key: "location", value: this.dataName }),
        create(StringStringEntryProtoSchema, { key: "offset", value: String(start) }),
        create(StringStringEntryProtoSchema, { key: "length", value: String(bytes.length) }),
      ];
    }
    this.initializers.push(t);
    return name;
  }

  /** Small constant helpers (always inline). */
  constI64(values: number[], dims: number[] = [values.length]): string {
    return this.initializer(this.fresh("c_i64"), "int64", dims, BigInt64Array.from(values.map(BigInt)));
  }
  constF32(values: number[], dims: number[] = [values.length]): string {
    return this.initializer(this.fresh("c_f32"), "float32", dims, Float32Array.from(values));
  }

  /**
   * Adds a node. `outputs` is a count (fresh names made from the op type) or explicit names ("" = omitted
   * optional output). Returns the output names.
   */
  node(op: string, inputs: string[], outputs: number | string[] = 1, attrs: Record<string, Attr> = {}, domain = ""): string[] {
    const outs = typeof outputs === "number" ? Array.from({ length: outputs }, () => this.fresh(op)) : outputs;
    for (const o of outs) if (o !== "") this.names.add(o);
    const n = create(NodeProtoSchema, {
      opType: op,
      domain,
      name: this.fresh(`n_${op}`),
      input: inputs,
      output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    this.nodes.push(n);
    return outs;
  }

  /** Single-output shorthand. */
  op(op: string, inputs: string[], attrs: Record<string, Attr> = {}, domain = ""): string {
    return this.node(op, inputs, 1, attrs, domain)[0];
  }

  /**
   * A subgraph (an If branch): the nodes `build` adds go to it instead of the main graph, and it returns the
   * names of its outputs. It may read any value of the enclosing graph (ONNX outer scope); initializers it
   * creates live in the main graph, which a subgraph may read too.
   */
  subgraph(name: string, build: () => { name: string; type: ElemType; dims: Dim[] }[]): GraphAttr {
    const saved = this.nodes.splice(0);
    let outs: { name: string; type: ElemType; dims: Dim[] }[];
    let body: NodeProto[];
    try {
      outs = build();
    } finally {
      body = this.nodes.splice(0);
      this.nodes.push(...saved);
    }
    return new GraphAttr(create(GraphProtoSchema, { name, node: body, output: outs.map((o) => valueInfo(o.name, o.type, o.dims)) }));
  }

  /** Writes model + data files (temp + rename, data first). */
  finish(graphName = "onepass"): void {
    if (this.dataFd === undefined) throw new GraphError("builder already finished", { file: this.modelPath });
    closeSync(this.dataFd);
    this.dataFd = undefined;
    const model = create(ModelProtoSchema, {
      irVersion: 10n,
      producerName: "onepass",
      opsetImport: [
        create(OperatorSetIdProtoSchema, { domain: "", version: BigInt(this.opset) }),
        create(OperatorSetIdProtoSchema, { domain: MS_DOMAIN, version: BigInt(this.msOpset) }),
      ],
      graph: create(GraphProtoSchema, {
        name: graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      }),
    });
    const bytes = toBinary(ModelProtoSchema, model);
    const modelTmp = `${this.modelPath}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    try {
      writeFileSync(modelTmp, bytes);
      renameSync(this.dataTmp, this.modelPath + ".data");
      renameSync(modelTmp, this.modelPath);
    } catch (e) {
      rmSync(modelTmp, { force: true });
      rmSync(this.dataTmp, { force: true });
      throw new GraphError(`cannot write ONNX model: ${(e as Error).message}`, { file: this.modelPath }, { cause: e });
    }
  }

  /** Drops the temporary data file (after a failed build). */
  abort(): void {
    if (this.dataFd !== undefined) closeSync(this.dataFd);
    this.dataFd = undefined;
    if (existsSync(this.dataTmp)) rmSync(this.dataTmp, { force: true });
  }
}

/** A typed tensor input/output declaration; number dims are fixed, string dims symbolic. */
export function valueInfo(name: string, type: ElemType, dims: Dim[]): ValueInfoProto {
  const shape = create(TensorShapeProtoSchema, {
    dim: dims.map((d) =>
      create(TensorShapeProto_DimensionSchema, {
        value: typeof d === "number" ? { case: "dimValue", value: BigInt(d) } : { case: "dimParam", value: d },
      }),
    ),
  });
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: { case: "tensorType", value: create(TypeProto_TensorSchema, { elemType: DATA_TYPE[type], shape }) },
    }),
  });
}

/** A node attribute: integer → INT, number[] → INTS, string → STRING, float()/float()[] → FLOAT/FLOATS. */
export function attribute(name: string, v: Attr): AttributeProto {
  if (v instanceof GraphAttr) return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.GRAPH, g: v.graph });
  if (v instanceof FloatAttr) return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: v.value });
  if (typeof v === "string") {
    return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.STRING, s: new TextEncoder().encode(v) });
  }
  if (typeof v === "number") {
    if (!Number.isInteger(v)) throw new GraphError(`attribute ${name}=${v} is not an integer (use float())`);
    return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(v) });
  }
  if (v.length > 0 && v[0] instanceof FloatAttr) {
    return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOATS, floats: (v as FloatAttr[]).map((x) => x.value) });
  }
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INTS, ints: (v as number[]).map(BigInt) });
}

/** One node (default domain); attributes as in `attribute`; `name` is left empty unless given. */
export function nodeProto(op: string, inputs: string[], outputs: string[], attrs: Record<string, Attr> = {}, name = ""): NodeProto {
  return create(NodeProtoSchema, { opType: op, name, input: inputs, output: outputs, attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)) });
}

/** A small weightless model (default-domain ops only), serialised in memory: for sessions built from bytes. */
export interface InMemoryModel {
  name: string;
  nodes: NodeProto[];
  inputs: ValueInfoProto[];
  outputs: ValueInfoProto[];
  /** Default-domain opset; default 17. */
  opset?: number;
  producer?: string;
  /** Constant tensors (weights), inline in the protobuf (see `float32Initializer`). */
  initializers?: TensorProto[];
}

/** An inline float32 constant tensor `name` of shape `dims` (for in-memory models; 2 GiB protobuf limit). */
export function float32Initializer(name: string, dims: readonly number[], data: Float32Array): TensorProto {
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new GraphError(`initializer has ${data.length} values, expected ${count} for [${dims.join(", ")}]`, { field: name });
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return create(TensorProtoSchema, { name, dataType: TensorProto_DataType.FLOAT, dims: dims.map((d) => BigInt(d)), rawData: new Uint8Array(bytes) });
}

/** ONNX model bytes (IR version 8) for `m`. */
export function inMemoryModelBytes(m: InMemoryModel): Uint8Array {
  const graph = create(GraphProtoSchema, { name: m.name, node: m.nodes, input: m.inputs, output: m.outputs, initializer: m.initializers ?? [] });
  return toBinary(
    ModelProtoSchema,
    create(ModelProtoSchema, {
      irVersion: 8n,
      producerName: m.producer ?? "onepass",
      opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: BigInt(m.opset ?? 17) })],
      graph,
    }),
  );
}

/**
 * The bytes of `modelPath` with every MatMulNBits node's accuracy_level set to `level`, or undefined when the
 * model has no MatMulNBits node. Load the result with the session option
 * `session.model_external_initializers_file_folder_path` = the model's folder (its weights stay in one file).
 */
export function withMatMulNBitsAccuracy(modelPath: string, level: number): Uint8Array | undefined {
  let model;
  try {
    model = fromBinary(ModelProtoSchema, readFileSync(modelPath));
  } catch (e) {
    throw new GraphError(`cannot parse ONNX model: ${(e as Error).message}`, { file: modelPath }, { cause: e });
  }
  let patched = 0;
  for (const node of model.graph?.node ?? []) {
    if (node.opType !== "MatMulNBits") continue;
    const attr = node.attribute.find((a) => a.name === "accuracy_level");
    if (attr !== undefined) attr.i = BigInt(level);
    else node.attribute.push(attribute("accuracy_level", level));
    patched++;
  }
  return patched > 0 ? toBinary(ModelProtoSchema, model) : undefined;
}
