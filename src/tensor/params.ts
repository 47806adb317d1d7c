import { Tensor, sizeOf, type DType } from "./autograd.js";
import type { Rng } from "../numeric/rng.js";

/** A trainable tensor, zero-filled or drawn N(0, std²) from a seeded generator. */
export function newParam(name: string, shape: number[], dtype: DType, rng?: Rng, std = 0): Tensor {
  const n = sizeOf(shape);
  const data = dtype === "f64" ? new Float64Array(n) : new Float32Array(n); // shape
  if (rng !== undefined && std > 0) for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
  return new Tensor(shape, data, true, name);
}
