/** WeightSource over a GGUF file: per-tensor positioned reads from one file descriptor. */
import { closeSync } from "node:fs";
import { InvalidArgumentError, UnsupportedModelError } from "../../errors.js";
import { openForReading, readExactly } from "../file-read.js";
import type { Int4Blocks, TensorInfo, WeightSource } from "../spec.js";
import { dequantize, q4_0ToMatMulNBits } from "./dequant.js";
import type { GgufHeader, GgufTensorEntry } from "./reader.js";

export class GgufWeightSource implements WeightSource {
  readonly path: string;
  private fd: number | undefined;
  private readonly byName: Map<string, GgufTensorEntry>;

  constructor(private readonly header: GgufHeader) {
    this.path = header.path;
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  list(): TensorInfo[] {
    return this.header.tensors.map((t) => this.toInfo(t));
  }
  has(name: string): boolean {
    return this.byName.has(name);
  }
  info(name: string): TensorInfo {
    return this.toInfo(this.entry(name));
  }

  readF32(name: string): Float32Array {
    const t = this.entry(name);
    const dtype = this.dtypeOf(t);
    return dequantize(dtype, this.readBytes(t), t.elements);
  }

  readInt4(name: string): Int4Blocks | undefined {
    const t = this.entry(name);
    if (t.type.dtype !== "q4_0" || t.shape.length !== 2) return undefined;
    const [n, k] = t.shape as [number, number];
    const { data, scales } = q4_0ToMatMulNBits(this.readBytes(t), n, k);
    return { n, k, blockSize: 32, data, scales };
  }

  /** The stored bytes of a tensor (little-endian, ggml layout). */
  readRaw(name: string): Uint8Array {
    return this.readBytes(this.entry(name));
  }

  close(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }

  private entry(name: string): GgufTensorEntry {
    const t = this.byName.get(name);
    if (t === undefined) throw new InvalidArgumentError("no such tensor in the model", { file: this.path, field: name });
    return t;
  }

  private dtypeOf(t: GgufTensorEntry) {
    if (t.type.dtype === undefined) {
      throw new UnsupportedModelError(`tensor type ${t.type.name} is not supported`, { file: this.path, field: t.name, offset: t.entryOffset });
    }
    return t.type.dtype;
  }

  private toInfo(t: GgufTensorEntry): TensorInfo {
    return { name: t.name, shape: [...t.shape], dtype: this.dtypeOf(t) };
  }

  private readBytes(t: GgufTensorEntry): Uint8Array {
    this.fd ??= openForReading(this.path);
    return readExactly(this.fd, this.path, t.dataOffset, t.byteSize, t.name); // [byteSize]
  }
}
