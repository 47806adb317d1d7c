/**
 * A small tape-based reverse-mode autograd for the probes. Tensors are flat row-major Float32Array (training,
 * inference) or Float64Array (gradient checks). Matrix products go through `kernel.ts` (ONNX Runtime MatMul
 * for large float32 work, JS loops otherwise), so forward and backward are async where they multiply.
 */
import { gemm, type FloatArray, type GemmShape } from "./kernel.js";
import { InvalidArgumentError } from "../errors.js";

export type DType = "f32" | "f64";

export class Tensor {
  grad: FloatArray | null = null;
  constructor(
    readonly shape: number[],
    /** [prod(shape)] row-major */
    readonly data: FloatArray,
    readonly requiresGrad: boolean,
    /** Parameter name (for parameters only). */
    readonly name?: string,
  ) {
    if (data.length !== sizeOf(shape)) {
      throw new InvalidArgumentError(`tensor data has ${data.length} values, shape [${shape.join(", ")}] needs ${sizeOf(shape)}`, { field: name ?? "tensor" });
    }
  }
  get size(): number {
    return this.data.length;
  }
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

/** Which mask row a softmax/pooling row uses: maskRowOf(r) = floor(r / rowsPerMask) % maskRows. */
export interface RowMask {
  /** [maskRows, width] 1 = valid, 0 = padding */
  mask: Uint8Array;
  maskRows: number;
  rowsPerMask: number;
}

function maskOffset(m: RowMask, row: number, width: number): number {
  return (Math.floor(row / m.rowsPerMask) % m.maskRows) * width;
}

type Backward = () => void | Promise<void>;

/**
 * Records operations while `recording` is true; `backward(loss)` replays them in reverse. One tape per
 * forward pass (create, run, backward, drop).
 */
export class Tape {
  private readonly steps: Backward[] = [];
  constructor(
    readonly dtype: DType = "f32",
    /** false: inference, no closures are kept. */
    readonly recording = true,
  ) {}

  alloc(n: number): FloatArray {
    return this.dtype === "f64" ? new Float64Array(n) : new Float32Array(n);
  }

  /** A constant input (no gradient). Data is converted to the tape dtype when needed. */
  constant(shape: number[], data: FloatArray): Tensor {
    return new Tensor(shape, this.convert(data), false);
  }

  convert(data: FloatArray): FloatArray {
    if (this.dtype === "f64" && !(data instanceof Float64Array)) return Float64Array.from(data);
    if (this.dtype === "f32" && !(data instanceof Float32Array)) return Float32Array.from(data);
    return data;
  }

  private out(shape: number[], data: FloatArray, parents: Tensor[]): Tensor {
    return new Tensor(shape, data, this.recording && parents.some((p) => p.requiresGrad));
  }

  private record(t: Tensor, back: Backward): void {
    if (t.requiresGrad) this.steps.push(back);
  }

  private gradOf(t: Tensor): FloatArray {
    if (t.grad === null) t.grad = this.alloc(t.size);
    return t.grad;
  }

  /**
   * t.grad += g. When t has no gradient yet it adopts g without copying: every g handed here is a fresh array
   * (or the gradient of an output whose backward step has already run), so sharing it is safe.
   */
  private accumulate(t: Tensor, g: FloatArray): void {
    if (t.grad === null && g.length === t.size && (g instanceof Float64Array) === (this.dtype === "f64")) t.grad = g;
    else Tape.addInto(this.gradOf(t), g);
  }

  private static addInto(dst: FloatArray, src: FloatArray): void {
    for (let i = 0; i < dst.length; i++) dst[i] += src[i];
  }

  /**
   * An op computed elsewhere (e.g. a fused ONNX Runtime kernel): `back(dOut)` returns the gradient of each
   * parent (or null), which the tape accumulates.
   */
  custom(shape: number[], data: FloatArray, parents: Tensor[], back: (dOut: FloatArray) => Promise<(FloatArray | null)[]>): Tensor {
    const c = this.out(shape, data, parents);
    this.record(c, async () => {
      const grads = await back(c.grad!);
      parents.forEach((p, i) => {
        const g = grads[i];
        if (p.requiresGrad && g !== null && g !== undefined) this.accumulate(p, g);
      });
    });
    return c;
  }

  /** Reverse pass from a scalar loss (d loss / d loss = 1). Gradients accumulate into `.grad`. */
  async backward(loss: Tensor): Promise<void> {
    if (loss.size !== 1) throw new InvalidArgumentError(`backward needs a scalar loss, got shape [${loss.shape.join(", ")}]`, { field: "loss" });
    this.gradOf(loss)[0] = 1;
    for (let i = this.steps.length - 1; i >= 0; i--) await this.steps[i]();
    this.steps.length = 0;
  }

  /**
   * Batched product. a: [G, M, K] or [M, K]; b: [G, K, N] or [K, N] (broadcast over G), or with transB the
   * stored b is [.., N, K]. Result [G, M, N] (or [M, N] when both are 2-D).
   */
  async matmul(a: Tensor, b: Tensor, opts: { transB?: boolean } = {}): Promise<Tensor> {
    const transB = opts.transB === true;
    const aRank3 = a.shape.length === 3;
    const bRank3 = b.shape.length === 3;
    const G = aRank3 ? a.shape[0] : 1;
    const M = a.shape[a.shape.length - 2];
    const K = a.shape[a.shape.length - 1];
    const Gb = bRank3 ? b.shape[0] : 1;
    const bk = transB ? b.shape[b.shape.length - 1] : b.shape[b.shape.length - 2];
    const N = transB ? b.shape[b.shape.length - 2] : b.shape[b.shape.length - 1];
    if (bk !== K || (Gb !== 1 && Gb !== G) || a.shape.length < 2 || b.shape.length < 2) {
      throw new InvalidArgumentError(`matmul shapes [${a.shape.join(", ")}] · [${b.shape.join(", ")}]${transB ? "ᵀ" : ""} do not fit`, { field: "matmul" });
    }
    const s: GemmShape = { groups: G, groupsB: Gb, m: M, k: K, n: N, transB };
    const data = await gemm(s, a.data, b.data);
    const shape = aRank3 || bRank3 ? [G, M, N] : [M, N];
    const c = this.out(shape, data, [a, b]);
    this.record(c, async () => {
      const dc = c.grad!; // [G, M, N]
      if (a.requiresGrad) {
        // dA = dC · op(B)ᵀ
        const da = await gemm({ groups: G, groupsB: Gb, m: M, k: N, n: K, transB: !transB }, dc, b.data);
        this.accumulate(a, da);
      }
      if (b.requiresGrad) {
        // Broadcast B: fold the groups into the contracted axis so the sum over G happens inside one product.
        const g = Gb === 1 ? 1 : G;
        const rows = Gb === 1 ? G * M : M;
        const db = transB
          ? await gemm({ groups: g, groupsB: g, m: N, k: rows, n: K, transA: true }, dc, a.data) // [g, N, K]
          : await gemm({ groups: g, groupsB: g, m: K, k: rows, n: N, transA: true }, a.data, dc); // [g, K, N]
        this.accumulate(b, db);
      }
    });
    return c;
  }

  /** a + b, b broadcast over a's leading axes (b's shape is a suffix of a's in size: a.size % b.size == 0). */
  add(a: Tensor, b: Tensor): Tensor {
    if (a.size % b.size !== 0) throw new InvalidArgumentError(`add: [${b.shape.join(", ")}] does not broadcast to [${a.shape.join(", ")}]`, { field: "add" });
    const n = b.size;
    const data = this.alloc(a.size);
    for (let i = 0; i < a.size; i++) data[i] = a.data[i] + b.data[i % n];
    const c = this.out(a.shape.slice(), data, [a, b]);
    this.record(c, () => {
      const dc = c.grad!;
      if (a.requiresGrad) this.accumulate(a, dc);
      if (b.requiresGrad) {
        const db = this.gradOf(b);
        for (let i = 0; i < dc.length; i++) db[i % n] += dc[i];
      }
    });
    return c;
  }

  scale(a: Tensor, s: number): Tensor {
    const data = this.alloc(a.size);
    for (let i = 0; i < a.size; i++) data[i] = a.data[i] * s;
    const c = this.out(a.shape.slice(), data, [a]);
    this.record(c, () => {
      const dc = c.grad!;
      const da = this.gradOf(a);
      for (let i = 0; i < dc.length; i++) da[i] += dc[i] * s;
    });
    return c;
  }

  tanh(a: Tensor): Tensor {
    const data = this.alloc(a.size);
    for (let i = 0; i < a.size; i++) data[i] = Math.tanh(a.data[i]);
    const c = this.out(a.shape.slice(), data, [a]);
    this.record(c, () => {
      const dc = c.grad!;
      const da = this.gradOf(a);
      for (let i = 0; i < dc.length; i++) da[i] += dc[i] * (1 - data[i] * data[i]);
    });
    return c;
  }

  exp(a: Tensor): Tensor {
    const data = this.alloc(a.size);
    for (let i = 0; i < a.size; i++) data[i] = Math.exp(a.data[i]);
    const c = this.out(a.shape.slice(), data, [a]);
    this.record(c, () => {
      const dc = c.grad!;
      const da = this.gradOf(a);
      for (let i = 0; i < dc.length; i++) da[i] += dc[i] * data[i];
    });
    return c;
  }

  /** Elementwise product of same-shaped tensors. */
  mul(a: Tensor, b: Tensor): Tensor {
    if (a.size !== b.size) throw new InvalidArgumentError(`mul: sizes ${a.size} and ${b.size} differ`, { field: "mul" });
    const data = this.alloc(a.size);
    for (let i = 0; i < a.size; i++) data[i] = a.data[i] * b.data[i];
    const c = this.out(a.shape.slice(), data, [a, b]);
    this.record(c, () => {
      const dc = c.grad!;
      if (a.requiresGrad) { const da = this.gradOf(a); for (let i = 0; i < dc.length; i++) da[i] += dc[i] * b.data[i]; }
      if (b.requiresGrad) { const db = this.gradOf(b); for (let i = 0; i < dc.length; i++) db[i] += dc[i] * a.data[i]; }
    });
    return c;
  }

  /** Same data, new shape (no copy). */
  reshape(a: Tensor, shape: number[]): Tensor {
    if (sizeOf(shape) !== a.size) throw new InvalidArgumentError(`reshape [${a.shape.join(", ")}] → [${shape.join(", ")}] changes the size`, { field: "reshape" });
    const c = this.out(shape, a.data, [a]);
    this.record(c, () => this.accumulate(a, c.grad!));
    return c;
  }

  /** Axis permutation (copy): out.shape[i] = a.shape[perm[i]]. */
  permute(a: Tensor, perm: number[]): Tensor {
    const shape = perm.map((p) => a.shape[p]);
    const map = permuteIndex(a.shape, perm); // out index → a index
    const data = this.alloc(a.size);
    for (let i = 0; i < map.length; i++) data[i] = a.data[map[i]];
    const c = this.out(shape, data, [a]);
    this.record(c, () => {
      const dc = c.grad!;
      const da = this.gradOf(a);
      for (let i = 0; i < map.length; i++) da[map[i]] += dc[i];
    });
    return c;
  }

  /** Softmax over the last axis; masked entries get probability 0 (as if −∞). A fully masked row is all 0. */
  softmax(a: Tensor, mask?: RowMask): Tensor {
    const w = a.shape[a.shape.length - 1];
    const rows = a.size / w;
    const data = this.alloc(a.size);
    for (let r = 0; r < rows; r++) {
      const o = r * w;
      const mo = mask === undefined ? -1 : maskOffset(mask, r, w);
      let max = -Infinity;
      for (let j = 0; j < w; j++) if ((mo < 0 || mask!.mask[mo + j] !== 0) && a.data[o + j] > max) max = a.data[o + j];
      if (max === -Infinity) continue;
      let sum = 0;
      for (let j = 0; j < w; j++) {
        if (mo >= 0 && mask!.mask[mo + j] === 0) continue;
        const e = Math.exp(a.data[o + j] - max);
        data[o + j] = e;
        sum += e;
      }
      for (let j = 0; j < w; j++) data[o + j] /= sum;
    }
    const c = this.out(a.shape.slice(), data, [a]);
    this.record(c, () => {
      const dc = c.grad!;
      const da = this.gradOf(a);
      for (let r = 0; r < rows; r++) {
        const o = r * w;
        let dot = 0;
        for (let j = 0; j < w; j++) dot += data[o + j] * dc[o + j];
        for (let j = 0; j < w; j++) da[o + j] += data[o + j] * (dc[o + j] - dot);
      }
    });
    return c;
  }

  /**
   * Masked pooling over the middle axis: a [G, T, d] → [G, d]; group g uses mask row per `mask` (undefined:
   * all T valid). mean: average of valid rows; max: per feature, gradient flows to the argmax only.
   */
  pool(a: Tensor, kind: "mean" | "max", mask?: RowMask): Tensor {
    const [G, T, d] = a.shape;
    if (a.shape.length !== 3) throw new InvalidArgumentError(`pool needs [G, T, d], got [${a.shape.join(", ")}]`, { field: "pool" });
    const data = this.alloc(G * d);
    const argmax = kind === "max" ? new Int32Array(G * d).fill(-1) : null; // [G, d] token index
    const counts = new Float64Array(G); // [G]
    for (let g = 0; g < G; g++) {
      const mo = mask === undefined ? -1 : maskOffset(mask, g, T);
      const out = g * d;
      let n = 0;
      if (argmax !== null) for (let j = 0; j < d; j++) data[out + j] = -Infinity;
      for (let t = 0; t < T; t++) {
        if (mo >= 0 && mask!.mask[mo + t] === 0) continue;
        n++;
        const row = (g * T + t) * d;
        if (argmax === null) {
          for (let j = 0; j < d; j++) data[out + j] += a.data[row + j];
        } else {
          for (let j = 0; j < d; j++) {
            if (a.data[row + j] > data[out + j]) { data[out + j] = a.data[row + j]; argmax[out + j] = t; }
          }
        }
      }
      counts[g] = n;
      if (n === 0) { for (let j = 0; j < d; j++) data[out + j] = 0; continue; }
      if (argmax === null) for (let j = 0; j < d; j++) data[out + j] /= n;
    }
    const c = this.out([G, d], data, [a]);
    this.record(c, () => {
      const dc = c.grad!;
      const da = this.gradOf(a);
      for (let g = 0; g < G; g++) {
        if (counts[g] === 0) continue;
        if (argmax !== null) {
          for (let j = 0; j < d; j++) da[(g * T + argmax[g * d + j]) * d + j] += dc[g * d + j];
        } else {
          const mo = mask === undefined ? -1 : maskOffset(mask, g, T);
          const inv = 1 / counts[g];
          for (let t = 0; t < T; t++) {
            if (mo >= 0 && mask!.mask[mo + t] === 0) continue;
            const row = (g * T + t) * d;
            for (let j = 0; j < d; j++) da[row + j] += dc[g * d + j] * inv;
          }
        }
      }
    });
    return c;
  }

  /**
   * Mean cross-entropy of logits [B, C] against integer labels; with class weights w, the weighted mean
   * Σ w_y·nll / Σ w_y (PyTorch's convention).
   */
  crossEntropy(logits: Tensor, labels: ArrayLike<number>, classWeights?: ArrayLike<number>): Tensor {
    const [B, C] = logits.shape;
    const probs = new Float64Array(B * C); // [B, C]
    let total = 0;
    let wsum = 0;
    for (let b = 0; b < B; b++) {
      const y = labels[b];
      if (!(y >= 0 && y < C)) throw new InvalidArgumentError(`label ${y} out of range [0, ${C})`, { field: "label", offset: b });
      let max = -Infinity;
      for (let j = 0; j < C; j++) max = Math.max(max, logits.data[b * C + j]);
      let sum = 0;
      for (let j = 0; j < C; j++) { const e = Math.exp(logits.data[b * C + j] - max); probs[b * C + j] = e; sum += e; }
      for (let j = 0; j < C; j++) probs[b * C + j] /= sum;
      const w = classWeights === undefined ? 1 : classWeights[y];
      total += -w * Math.log(Math.max(probs[b * C + y], 1e-300));
      wsum += w;
    }
    const data = this.alloc(1);
    data[0] = total / wsum;
    const c = this.out([], data, [logits]);
    this.record(c, () => {
      const g = c.grad![0] / wsum;
      const dl = this.gradOf(logits);
      for (let b = 0; b < B; b++) {
        const y = labels[b];
        const w = classWeights === undefined ? 1 : classWeights[y];
        for (let j = 0; j < C; j++) dl[b * C + j] += g * w * (probs[b * C + j] - (j === y ? 1 : 0));
      }
    });
    return c;
  }

  /** Sum of all elements (scalar); handy for gradient checks. */
  sum(a: Tensor): Tensor {
    const data = this.alloc(1);
    let s = 0;
    for (let i = 0; i < a.size; i++) s += a.data[i];
    data[0] = s;
    const c = this.out([], data, [a]);
    this.record(c, () => {
      const g = c.grad![0];
      const da = this.gradOf(a);
      for (let i = 0; i < da.length; i++) da[i] += g;
    });
    return c;
  }
}

/** For a permutation of a row-major array: out flat index → input flat index. */
export function permuteIndex(shape: readonly number[], perm: readonly number[]): Int32Array {
  const rank = shape.length;
  const inStrides = new Array<number>(rank);
  let s = 1;
  for (let i = rank - 1; i >= 0; i--) { inStrides[i] = s; s *= shape[i]; }
  const outShape = perm.map((p) => shape[p]);
  const stridesInOutOrder = perm.map((p) => inStrides[p]);
  const map = new Int32Array(s);
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let i = 0; i < s; i++) {
    map[i] = src;
    for (let ax = rank - 1; ax >= 0; ax--) {
      idx[ax]++;
      src += stridesInOutOrder[ax];
      if (idx[ax] < outShape[ax]) break;
      src -= stridesInOutOrder[ax] * outShape[ax];
      idx[ax] = 0;
    }
  }
  return map;
}
