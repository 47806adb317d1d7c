/**
 * Matrix products for the probe autograd. Large float32 products go through an ONNX Runtime MatMul session
 * (dynamic shapes, broadcasting over a leading group axis); small or float64 products use a plain JS loop.
 * Why ORT: its MatMul is about two orders of magnitude faster than JS loops (100–300 vs 0.4–2.5 GFLOP/s,
 * measured on a 2-core AVX-512 CPU).
 */
import { inMemoryModelBytes, nodeProto, valueInfo } from "../onnx/proto.js";
import "../util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { GraphError } from "../errors.js";

export type FloatArray = Float32Array | Float64Array;

/**
 * Products below this many multiply-adds run on a single-threaded session: waking ORT's thread pool costs more
 * than it saves on small shapes (measured: small MHA training 2.3× faster single-threaded on 2 busy cores).
 */
export const ORT_MULTITHREAD_MACS = 1 << 24;

/** Products with fewer multiply-adds than this run in JS: an ORT call costs ≈18 µs (an async hop to its thread pool), more when the cores are busy. */
export const ORT_MIN_MACS = 1 << 18;

/** ONNX model bytes for C = op(A) · op(B), op = optional transpose of the last two axes; rank-3 inputs. */
function matmulModel(transA: boolean, transB: boolean): Uint8Array {
  const nodes = [];
  let a = "A";
  let b = "B";
  const perm = [0, 2, 1];
  if (transA) {
    nodes.push(nodeProto("Transpose", ["A"], ["At"], { perm }));
    a = "At";
  }
  if (transB) {
    nodes.push(nodeProto("Transpose", ["B"], ["Bt"], { perm }));
    b = "Bt";
  }
  nodes.push(nodeProto("MatMul", [a, b], ["C"]));
  return inMemoryModelBytes({
    name: "probe_matmul",
    producer: "onepass-probe",
    nodes,
    inputs: [valueInfo("A", "float32", ["ga", "a1", "a2"]), valueInfo("B", "float32", ["gb", "b1", "b2"])],
    outputs: [valueInfo("C", "float32", ["gc", "m", "n"])],
  });
}

const sessions = new Map<string, Promise<ort.InferenceSession>>();

/**
 * The session of one of the probe autograd's ONNX graphs (`name` says which), built on first use and shared;
 * `small` ones run single-threaded (see ORT_MULTITHREAD_MACS). A failed build is forgotten, so a later call retries.
 */
export function probeSession(name: string, build: () => Uint8Array, small: boolean): Promise<ort.InferenceSession> {
  const key = `${name}${small ? ":small" : ""}`;
  let s = sessions.get(key);
  if (s === undefined) {
    s = ort.InferenceSession.create(build(), { graphOptimizationLevel: "all", executionMode: "sequential", ...probeThreads(small) }).catch((err: unknown) => {
      sessions.delete(key);
      throw new GraphError(`cannot create the probe ${name} session: ${String(err)}`, { field: name }, { cause: err });
    });
    sessions.set(key, s);
  }
  return s;
}

/** Counters for benchmarks: multiply-adds and calls routed to ORT vs JS. */
export const kernelStats = { ortMacs: 0, ortCalls: 0, ortMs: 0, jsMacs: 0, jsCalls: 0 };

export interface GemmShape {
  /** Groups of A (B has `groupsB` ∈ {1, groups}: broadcast when 1). */
  groups: number;
  groupsB: number;
  m: number;
  k: number;
  n: number;
  /** A stored as [G, K, M] (use its transpose). */
  transA?: boolean;
  /** B stored as [Gb, N, K] (use its transpose). */
  transB?: boolean;
}

/** C [G, M, N] = op(A) [G, M, K] · op(B) [G|1, K, N], plain loops (float64-exact for gradient checks). */
export function gemmJs<T extends FloatArray>(s: GemmShape, a: T, b: T, out: T): T {
  const { groups, groupsB, m, k, n } = s;
  const transA = s.transA === true;
  const transB = s.transB === true;
  out.fill(0);
  for (let g = 0; g < groups; g++) {
    const ao = g * m * k;
    const bo = (groupsB === 1 ? 0 : g) * k * n;
    const co = g * m * n;
    for (let i = 0; i < m; i++) {
      for (let p = 0; p < k; p++) {
        const av = transA ? a[ao + p * m + i] : a[ao + i * k + p];
        if (av === 0) continue;
        const crow = co + i * n;
        if (transB) {
          for (let j = 0; j < n; j++) out[crow + j] += av * b[bo + j * k + p];
        } else {
          const brow = bo + p * n;
          for (let j = 0; j < n; j++) out[crow + j] += av * b[brow + j];
        }
      }
    }
  }
  kernelStats.jsMacs += groups * m * k * n;
  kernelStats.jsCalls++;
  return out;
}

/** C [G, M, N] = op(A) · op(B); float32 through ORT above ORT_MIN_MACS, else JS. */
export async function gemm<T extends FloatArray>(s: GemmShape, a: T, b: T): Promise<T> {
  const macs = s.groups * s.m * s.k * s.n;
  const make = (len: number): T => (a instanceof Float64Array ? new Float64Array(len) : new Float32Array(len)) as T;
  if (!(a instanceof Float32Array) || macs < ORT_MIN_MACS || forceJs) {
    return gemmJs(s, a, b, make(s.groups * s.m * s.n));
  }
  const tA = s.transA === true, tB = s.transB === true;
  const sess = await probeSession(`MatMul${tA ? "_tA" : ""}${tB ? "_tB" : ""}`, () => matmulModel(tA, tB), macs < ORT_MULTITHREAD_MACS);
  const dimsA = s.transA ? [s.groups, s.k, s.m] : [s.groups, s.m, s.k];
  const dimsB = s.transB ? [s.groupsB, s.n, s.k] : [s.groupsB, s.k, s.n];
  const t0 = performance.now();
  const res = await sess.run({
    A: new ort.Tensor("float32", a as Float32Array, dimsA),
    B: new ort.Tensor("float32", b as Float32Array, dimsB),
  });
  kernelStats.ortMs += performance.now() - t0;
  kernelStats.ortMacs += macs;
  kernelStats.ortCalls++;
  const c = res["C"];
  if (c === undefined) throw new GraphError("probe MatMul session returned no output", { field: "C" });
  return c.data as T;
}

let forceJs = false;
/** Route every product through the JS loops (for tests and benchmarks comparing the two). */
export function setForceJsKernel(on: boolean): void {
  forceJs = on;
}

/**
 * ORT session options for the probe kernels: intra-op threads from ONEPASS_PROBE_THREADS when set, else 1 for
 * small work and ORT's default (all cores) for large work. Spinning is off: a probe runs between the serving
 * model's prefill and decode, and idle probe threads spinning on the same cores would slow the decode steps.
 */
export function probeThreads(small: boolean): { intraOpNumThreads?: number; extra: Record<string, unknown> } {
  const extra = { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } };
  const n = Number(process.env.ONEPASS_PROBE_THREADS);
  if (Number.isInteger(n) && n > 0) return { intraOpNumThreads: n, extra };
  return small ? { intraOpNumThreads: 1, extra } : { extra };
}
