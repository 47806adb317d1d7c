/**
 * Compiled probes: a set of trained probes (pooling, scoring, MHA, fixed) turned into ONE ONNX inference graph
 * (no autograd) that runs in its own ORT session on the hidden-state tensor. One `run()` gives every probe's
 * class probabilities (and the scoring gate's layer weights). The maths is the training forward's
 * (aggregators/*.ts), op for op; test/probe-compiled.test.ts proves the two equal (≤ 1e-5) for every kind.
 *
 * Why a session of its own rather than nodes appended to the decoder graph (bench/compiled-probes.ts, random
 * Qwen2.5-0.5B shape, 128-token prefill, 2-core EPYC at load average ~11): two runs gave own-session/appended
 * total ratios of 0.93, 0.82, 0.84, 0.91 and 1.09, 1.05, 0.98, 1.37 (pooling, scoring, MHA, 4 probes): no
 * difference the noise lets through, because the probes cost little next to the prefill and the taps already
 * leave ORT as one buffer that is fed back here without a copy (ort.Tensor wraps the same Float32Array). What
 * decides is attach/detach: an appended graph is a second decoder session per probe set (a reload and another
 * copy of the weights in memory), this one is a small graph built in milliseconds, never touching the decoder.
 *
 * Graph inputs: hidden [L+1, B, T, d] float32 (padding positions may hold anything), mask [B, T] float32
 * (1 = real token, 0 = padding; right or left padding alike). Outputs per probe i: probs_i [B, C], and for
 * scoring probes layer_weights_i [B, L+1].
 */
import "../util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import type { TensorProto } from "onnx-buf";
import type { HiddenStates } from "../types/hidden.js";
import { GraphError, InvalidArgumentError } from "../errors.js";
import { float, float32Initializer, inMemoryModelBytes, nodeProto, valueInfo, type Attr } from "../onnx/proto.js";
import type { ProbeBatch } from "../tensor/batch.js";
import { probeThreads } from "../tensor/kernel.js";
import { FixedAggregator } from "./aggregators/fixed.js";
import { MhaAggregator } from "./aggregators/mha.js";
import { PoolingAggregator } from "./aggregators/pooling.js";
import { ScoringAggregator } from "./aggregators/scoring.js";
import type { Probe } from "./probe.js";
import type { Tensor } from "../tensor/autograd.js";

/** What one compiled probe returns for a batch. */
export interface CompiledOutput {
  /** [B, C] class probabilities (softmax of the head's logits). */
  probabilities: Float32Array;
  /** [B, L+1] layer-gate weights (scoring probes only). */
  layerWeights?: Float32Array;
}

/** Larger than any hidden-state magnitude, finite (so masked max never meets −∞ − −∞ = NaN). */
const NEG_BIG = -3.0e38;
/** Additive bias for padding keys/tokens in a softmax: exp(s − 1e9) underflows to exactly 0 for |s| ≪ 1e9. */
const MASK_BIAS = 1e9;

/** A tiny graph writer over the repo's ONNX proto helpers: fresh names, nodes, float32 weights. */
class GraphWriter {
  readonly nodes: ReturnType<typeof nodeProto>[] = [];
  readonly initializers: TensorProto[] = [];
  private n = 0;
  op(op: string, inputs: string[], attrs: Record<string, Attr> = {}, out?: string): string {
    const name = out ?? `${op.toLowerCase()}_${this.n++}`;
    this.nodes.push(nodeProto(op, inputs, [name], attrs));
    return name;
  }
  weight(name: string, dims: number[], data: ArrayLike<number>): string {
    this.initializers.push(float32Initializer(name, dims, data instanceof Float32Array ? data : Float32Array.from(data)));
    return name;
  }
  ints(values: number[]): string {
    const name = `i64_${this.n++}`;
    this.nodes.push(nodeProto("Constant", [], [name], { value_ints: values }));
    return name;
  }
  scalar(v: number): string {
    const name = `f32_${this.n++}`;
    this.nodes.push(nodeProto("Constant", [], [name], { value_float: float(v) }));
    return name;
  }
}

/** Values every probe of a set may use, built once per graph. */
interface Shared {
  x: string; // hidden [L+1, B, T, d]
  mask: string; // [B, T] 1/0
  mask4: string; // [1, B, T, 1]
  valid4: string; // bool [1, B, T, 1]
  count3: string; // [1, B, 1] real tokens per prompt
  bias: string; // [B, T] 0 at real tokens, −1e9 at padding
}

function shared(g: GraphWriter): Shared {
  const mask = "mask";
  const mask4 = g.op("Unsqueeze", [mask, g.ints([0, 3])]); // [1, B, T, 1]
  const valid4 = g.op("Cast", [mask4], { to: 9 }); // bool [1, B, T, 1]
  const count = g.op("ReduceSum", [mask, g.ints([1])], { keepdims: 1 }); // [B, 1]
  const count3 = g.op("Unsqueeze", [count, g.ints([0])]); // [1, B, 1]
  const bias = g.op("Mul", [g.op("Sub", [mask, g.scalar(1)]), g.scalar(MASK_BIAS)]); // [B, T]
  return { x: "hidden", mask, mask4, valid4, count3, bias };
}

/** Masked mean or max over the token axis: x [G, B, T, w] → [G, B, w] (the tape's `pool` with a row mask). */
function maskedPool(g: GraphWriter, s: Shared, x: string, kind: "mean" | "max"): string {
  if (kind === "mean") {
    const sum = g.op("ReduceSum", [g.op("Mul", [x, s.mask4]), g.ints([2])], { keepdims: 0 }); // [G, B, w]
    return g.op("Div", [sum, s.count3]); // [G, B, w]
  }
  return g.op("ReduceMax", [g.op("Where", [s.valid4, x, g.scalar(NEG_BIG)]), g.ints([2])], { keepdims: 0 }); // [G, B, w]
}

/** Stage 2 of pooling probes: the same pooling over the L+1 layer summaries: [L+1, B, d] → [B, d]. */
function poolLayers(g: GraphWriter, per: string, kind: "mean" | "max"): string {
  return g.op(kind === "mean" ? "ReduceMean" : "ReduceMax", [per, g.ints([0])], { keepdims: 0 }); // [B, d]
}

function data(t: Tensor): Float32Array {
  return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
}

/** Aggregator → v [B, d] (and the layer gate [B, L+1] for scoring). `p` prefixes this probe's weight names. */
function aggregate(g: GraphWriter, s: Shared, probe: Probe, p: string): { v: string; gate?: string } {
  const { layers: L1, dim: d } = probe.shape;
  const agg = probe.aggregator;
  if (agg instanceof PoolingAggregator) {
    return { v: poolLayers(g, maskedPool(g, s, s.x, agg.pool), agg.pool) };
  }
  if (agg instanceof ScoringAggregator) {
    const w1 = g.weight(`${p}.token_gate`, [L1, 1, d, 1], data(agg.tokenGate));
    const scores = g.op("Tanh", [g.op("Squeeze", [g.op("MatMul", [s.x, w1]), g.ints([3])])]); // [L+1, B, T]
    const alpha = g.op("Softmax", [g.op("Add", [scores, s.bias])], { axis: -1 }); // [L+1, B, T]
    const sums = g.op("MatMul", [g.op("Unsqueeze", [alpha, g.ints([2])]), s.x]); // [L+1, B, 1, d]
    const byPrompt = g.op("Transpose", [g.op("Squeeze", [sums, g.ints([2])])], { perm: [1, 0, 2] }); // [B, L+1, d]
    const w2 = g.weight(`${p}.layer_gate`, [d, 1], data(agg.layerGate));
    const ls = g.op("Tanh", [g.op("Squeeze", [g.op("MatMul", [byPrompt, w2]), g.ints([2])])]); // [B, L+1]
    const beta = g.op("Softmax", [ls], { axis: -1 }); // [B, L+1]
    const v = g.op("Squeeze", [g.op("MatMul", [g.op("Unsqueeze", [beta, g.ints([1])]), byPrompt]), g.ints([1])]); // [B, d]
    return { v, gate: beta };
  }
  if (agg instanceof MhaAggregator) {
    const tokens = mhaBlock(g, s, agg, s.x, agg.tokenBlock, L1, `${p}.token`, true); // [L+1, B, d]
    const byPrompt = g.op("Unsqueeze", [g.op("Transpose", [tokens], { perm: [1, 0, 2] }), g.ints([0])]); // [1, B, L+1, d]
    const out = mhaBlock(g, s, agg, byPrompt, agg.layerBlock, 1, `${p}.layer`, false); // [1, B, d]
    return { v: g.op("Squeeze", [out, g.ints([0])]) }; // [B, d]
  }
  if (agg instanceof FixedAggregator) {
    if (!(agg.layer >= 0 && agg.layer < L1)) throw new InvalidArgumentError(`fixed probe layer ${agg.layer} is outside 0..${L1 - 1}`, { field: "layer" });
    const xl = g.op("Gather", [s.x, g.op("Constant", [], { value_int: agg.layer })], { axis: 0 }); // [B, T, d]
    const count = g.op("Squeeze", [s.count3, g.ints([0])]); // [B, 1]
    if (agg.token === "mean") {
      const sum = g.op("ReduceSum", [g.op("Mul", [xl, g.op("Unsqueeze", [s.mask, g.ints([2])])]), g.ints([1])], { keepdims: 0 }); // [B, d]
      return { v: g.op("Div", [sum, count]) };
    }
    // the last real token: the position where the running count of real tokens reaches the total
    const running = g.op("CumSum", [s.mask, g.op("Constant", [], { value_int: 1 })]); // [B, T]
    const last = g.op("Mul", [g.op("Cast", [g.op("Equal", [running, count])], { to: 1 }), s.mask]); // [B, T] one-hot
    const v = g.op("MatMul", [g.op("Unsqueeze", [last, g.ints([1])]), xl]); // [B, 1, d]
    return { v: g.op("Squeeze", [v, g.ints([1])]) }; // [B, d]
  }
  throw new InvalidArgumentError(`cannot compile a probe of kind '${probe.config.kind}'`, { field: "kind" });
}

/**
 * One downcast attention block (MhaAggregator.block): x [G, B, T, d] → [G, B, d]. Q/K/V [G, d, d/f] per group,
 * H heads of width hd, padding keys masked when `masked` (stage 1), pooled mean|max over T.
 */
function mhaBlock(
  g: GraphWriter, s: Shared, agg: MhaAggregator, x: string,
  w: MhaAggregator["tokenBlock"], G: number, p: string, masked: boolean,
): string {
  const d = agg.dim, inner = agg.inner, H = agg.heads, hd = inner / H;
  const proj = (t: Tensor, name: string) => g.op("MatMul", [x, g.weight(`${p}.${name}`, [G, 1, d, inner], data(t))]); // [G, B, T, d/f]
  const heads = (t: string, perm: number[]) => g.op("Transpose", [g.op("Reshape", [t, g.ints([0, 0, 0, H, hd])])], { perm }); // [G, B, T, H, hd] → perm
  const q = heads(proj(w.q, "q"), [0, 1, 3, 2, 4]); // [G, B, H, T, hd]
  const kT = heads(proj(w.k, "k"), [0, 1, 3, 4, 2]); // [G, B, H, hd, T]
  const v = heads(proj(w.v, "v"), [0, 1, 3, 2, 4]); // [G, B, H, T, hd]
  let scores = g.op("Mul", [g.op("MatMul", [q, kT]), g.scalar(1 / Math.sqrt(hd))]); // [G, B, H, T, T]
  if (masked) scores = g.op("Add", [scores, g.op("Unsqueeze", [s.bias, g.ints([0, 2, 3])])]); // + [1, B, 1, 1, T]
  const ctx = g.op("MatMul", [g.op("Softmax", [scores], { axis: -1 }), v]); // [G, B, H, T, hd]
  const merged = g.op("Reshape", [g.op("Transpose", [ctx], { perm: [0, 1, 3, 2, 4] }), g.ints([0, 0, 0, inner])]); // [G, B, T, d/f]
  const pool = (t: string) => (masked ? maskedPool(g, s, t, agg.pool) : g.op(agg.pool === "mean" ? "ReduceMean" : "ReduceMax", [t, g.ints([2])], { keepdims: 0 }));
  if (agg.pool === "mean") {
    // mean pooling is linear: pool the d/f-wide heads' output, then project (as training does)
    return g.op("MatMul", [pool(merged), g.weight(`${p}.o`, [G, inner, d], data(w.o))]); // [G, B, d]
  }
  const out = g.op("MatMul", [merged, g.weight(`${p}.o`, [G, 1, inner, d], data(w.o))]); // [G, B, T, d]
  return pool(out); // [G, B, d]
}

/** A standardised probe reads (hidden − mean) / std with its saved per-layer statistics (padding stays masked). */
function standardized(g: GraphWriter, s: Shared, probe: Probe, prefix: string): Shared {
  if (probe.config.standardize !== true) return s;
  if (probe.norm === undefined) throw new InvalidArgumentError("standardised probe has no input statistics (norm.mean/norm.std)", { field: "norm" });
  const { layers: L1, dim: d } = probe.shape;
  const mean = g.weight(`${prefix}.norm.mean`, [L1, 1, 1, d], probe.norm.mean); // [L+1, 1, 1, d]
  const std = g.weight(`${prefix}.norm.std`, [L1, 1, 1, d], probe.norm.std); // [L+1, 1, 1, d]
  return { ...s, x: g.op("Div", [g.op("Sub", [s.x, mean]), std]) }; // [L+1, B, T, d]
}

/** ONNX model bytes computing every probe of `probes` from one hidden-state tensor (see the file comment). */
export function compileProbeGraph(probes: readonly Probe[]): Uint8Array {
  if (probes.length === 0) throw new InvalidArgumentError("no probes to compile", { field: "probes" });
  const { layers: L1, dim: d } = probes[0].shape;
  for (const pr of probes) {
    if (pr.shape.layers !== L1 || pr.shape.dim !== d) {
      throw new InvalidArgumentError(`probes of one compiled set must share L+1 and d: ${pr.shape.layers} × ${pr.shape.dim} vs ${L1} × ${d}`, { field: "probes" });
    }
  }
  const g = new GraphWriter();
  const s = shared(g);
  const outputs = [];
  for (let i = 0; i < probes.length; i++) {
    const probe = probes[i];
    const C = probe.shape.classes;
    const { v, gate } = aggregate(g, standardized(g, s, probe, `p${i}`), probe, `p${i}`);
    const w = g.weight(`p${i}.head.weight`, [d, C], data(probe.headWeight));
    const b = g.weight(`p${i}.head.bias`, [C], data(probe.headBias));
    const logits = g.op("Add", [g.op("MatMul", [v, w]), b]); // [B, C]
    g.op("Softmax", [logits], { axis: -1 }, `probs_${i}`); // [B, C]
    outputs.push(valueInfo(`probs_${i}`, "float32", ["B", C]));
    if (gate !== undefined) {
      g.op("Identity", [gate], {}, `layer_weights_${i}`); // [B, L+1]
      outputs.push(valueInfo(`layer_weights_${i}`, "float32", ["B", L1]));
    }
  }
  return inMemoryModelBytes({
    name: "onepass_probes",
    producer: "onepass-probe",
    opset: 18,
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [valueInfo("hidden", "float32", [L1, "B", "T", d]), valueInfo("mask", "float32", ["B", "T"])],
    outputs,
  });
}

/**
 * A set of probes compiled into one ORT session. The probes' weights are copied in at compile time: compile
 * again after training them further.
 */
export class CompiledProbes {
  private constructor(
    readonly probes: readonly Probe[],
    private readonly session: ort.InferenceSession,
    /** ORT output names per probe: probs, and the layer gate when there is one. */
    private readonly names: { probs: string; gate?: string }[],
  ) {}

  static async create(probes: readonly Probe[], options: { threads?: number } = {}): Promise<CompiledProbes> {
    const bytes = compileProbeGraph(probes);
    const threads = probeThreads(false);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, {
        graphOptimizationLevel: "all",
        executionMode: "sequential",
        ...threads,
        ...(options.threads !== undefined ? { intraOpNumThreads: options.threads } : {}),
      });
    } catch (e) {
      throw new GraphError(`ONNX Runtime cannot load the compiled probes: ${(e as Error).message}`, { field: "probes" }, { cause: e });
    }
    const names = probes.map((p, i) => ({ probs: `probs_${i}`, ...(p.aggregator instanceof ScoringAggregator ? { gate: `layer_weights_${i}` } : {}) }));
    return new CompiledProbes(probes, session, names);
  }

  get layers(): number {
    return this.probes[0].shape.layers;
  }
  get dim(): number {
    return this.probes[0].shape.dim;
  }

  /**
   * Every probe on x [L+1, B, T, d] with mask [B, T] (1 = real token; undefined = all real). x is handed to ORT
   * as it is (no copy) when it is a Float32Array.
   */
  async run(x: ArrayLike<number>, B: number, T: number, mask?: Uint8Array): Promise<CompiledOutput[]> {
    const L1 = this.layers, d = this.dim;
    if (x.length !== L1 * B * T * d) {
      throw new InvalidArgumentError(`hidden states have ${x.length} values, the compiled probes expect [${L1}, ${B}, ${T}, ${d}]`, { field: "hidden" });
    }
    if (mask !== undefined && mask.length !== B * T) throw new InvalidArgumentError(`mask has ${mask.length} values, expected [${B}, ${T}]`, { field: "mask" });
    const m = new Float32Array(B * T); // [B, T]
    if (mask === undefined) m.fill(1);
    else for (let i = 0; i < m.length; i++) m[i] = mask[i] !== 0 ? 1 : 0;
    const xs = x instanceof Float32Array ? x : Float32Array.from(x);
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run({
        hidden: new ort.Tensor("float32", xs, [L1, B, T, d]), // [L+1, B, T, d]
        mask: new ort.Tensor("float32", m, [B, T]), // [B, T]
      });
    } catch (e) {
      throw new GraphError(`compiled probes failed: ${(e as Error).message}`, { field: "probes" }, { cause: e });
    }
    return this.names.map(({ probs, gate }) => ({
      probabilities: out[probs].data as Float32Array, // [B, C]
      ...(gate !== undefined ? { layerWeights: out[gate].data as Float32Array } : {}), // [B, L+1]
    }));
  }

  /** Every probe on a padded training-style batch. */
  runBatch(b: ProbeBatch): Promise<CompiledOutput[]> {
    return this.run(b.x, b.batch, b.tokens, b.mask);
  }

  /** Every probe on one prompt's HiddenStates [L+1, T, d] (B = 1, no copy). */
  async runHidden(h: HiddenStates): Promise<CompiledOutput[]> {
    if (h.layers !== this.layers || h.dim !== this.dim) {
      throw new InvalidArgumentError(`hidden states are ${h.layers} × ${h.dim}, the compiled probes expect ${this.layers} × ${this.dim}`, { field: "hidden" });
    }
    return await this.run(h.data, 1, h.tokens);
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** Identity of a probe object for the compiled-set cache. */
const probeIds = new WeakMap<Probe, number>();
let nextId = 0;
const cache = new Map<string, Promise<CompiledProbes>>();
/** Compiled sets kept at once (each holds an ORT session with a copy of its probes' weights). */
const CACHE_SIZE = 8;

/**
 * The compiled session for this exact set of probe objects (in this order), compiled on first use and cached
 * (least recently used out): attaching a probe set to a running engine costs one small graph build, and never
 * touches the decoder.
 */
export function compiledProbesFor(probes: readonly Probe[]): Promise<CompiledProbes> {
  if (probes.length === 0) throw new InvalidArgumentError("no probes to compile", { field: "probes" });
  const key = probes.map((p) => {
    let id = probeIds.get(p);
    if (id === undefined) probeIds.set(p, (id = nextId++));
    return id;
  }).join(",");
  let hit = cache.get(key);
  if (hit !== undefined) {
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  hit = CompiledProbes.create(probes);
  hit.catch(() => cache.delete(key));
  cache.set(key, hit);
  if (cache.size > CACHE_SIZE) {
    const [oldKey, old] = cache.entries().next().value as [string, Promise<CompiledProbes>];
    cache.delete(oldKey);
    old.then((c) => c.dispose(), () => {});
  }
  return hit;
}
