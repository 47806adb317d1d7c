/**
 * Next-token sampling over one row of logits: greedy, temperature, top-k, top-p (nucleus), with a seeded
 * PRNG so that a seed reproduces a generation exactly.
 *
 * Order (as in Hugging Face `generate`): logits / temperature → top-k → top-p over the top-k set → draw.
 * Nothing sorts the whole vocabulary: top-k uses a size-k min-heap (O(V log k)); top-p grows a candidate
 * set (64, 256, ...) until it holds the nucleus, which for peaked LLM distributions stops at the first step.
 */
import { InvalidArgumentError } from "../errors.js";
import { Rng } from "../numeric/rng.js";

export interface SamplingOptions {
  /** 0 = greedy (argmax). Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 or undefined = no limit). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 or undefined = no limit). */
  topP?: number;
  /** Seed for the PRNG; the same seed and logits give the same tokens. Default: a random seed. */
  seed?: number;
}

/** Index of the largest logit (the first one on ties). NaN logits are never chosen. */
export function argmax(logits: Float32Array): number {
  return greedyPick(logits).token;
}

/**
 * One pass over a row of logits [V] for greedy decoding: the index of the largest (the first on ties, NaN never
 * chosen, token 0 when all are -Infinity/NaN), and whether every logit is finite. Four running sums carry the
 * check (NaN or ±Inf makes a sum non-finite; one sum would chain every add): at V 151,936 the pass takes less
 * time than a plain argmax, where an argmax plus a separate scan took about four times as long.
 */
export function greedyPick(logits: Float32Array): { token: number; finite: boolean } {
  let best = 0;
  let bestValue = -Infinity;
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  const n = logits.length, n4 = n - (n % 4);
  let i = 0;
  for (; i < n4; i += 4) {
    const v0 = logits[i], v1 = logits[i + 1], v2 = logits[i + 2], v3 = logits[i + 3];
    s0 += v0;
    s1 += v1;
    s2 += v2;
    s3 += v3;
    if (v0 > bestValue) (bestValue = v0), (best = i);
    if (v1 > bestValue) (bestValue = v1), (best = i + 1);
    if (v2 > bestValue) (bestValue = v2), (best = i + 2);
    if (v3 > bestValue) (bestValue = v3), (best = i + 3);
  }
  for (; i < n; i++) {
    const v = logits[i];
    s0 += v;
    if (v > bestValue) (bestValue = v), (best = i);
  }
  return { token: best, finite: Number.isFinite(s0 + s1 + s2 + s3) };
}

/**
 * Indices of the k largest values, largest first, by a size-k min-heap: O(V log k) and no full sort.
 * @param values [V]
 */
export function topKIndices(values: Float32Array, k: number): Int32Array {
  const n = Math.min(k, values.length);
  const heap = new Int32Array(n); // [n] min-heap of indices keyed by values[]
  let size = 0;
  const less = (a: number, b: number): boolean => values[a] < values[b] || (values[a] === values[b] && a > b);
  const siftDown = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < size && less(heap[l], heap[m])) m = l;
      if (r < size && less(heap[r], heap[m])) m = r;
      if (m === i) return;
      const t = heap[i];
      heap[i] = heap[m];
      heap[m] = t;
      i = m;
    }
  };
  for (let i = 0; i < values.length; i++) {
    if (Number.isNaN(values[i])) continue;
    if (size < n) {
      let j = size++;
      heap[j] = i;
      while (j > 0) {
        const p = (j - 1) >> 1;
        if (!less(heap[j], heap[p])) break;
        const t = heap[j];
        heap[j] = heap[p];
        heap[p] = t;
        j = p;
      }
    } else if (less(heap[0], i)) {
      heap[0] = i;
      siftDown(0);
    }
  }
  const out = Array.from(heap.subarray(0, size));
  out.sort((a, b) => (values[b] - values[a]) || (a - b));
  return Int32Array.from(out);
}

/** Validates sampling options; throws InvalidArgumentError naming the bad field. */
export function checkSamplingOptions(options: SamplingOptions): void {
  const { temperature, topK, topP, seed } = options;
  if (temperature !== undefined && !(Number.isFinite(temperature) && temperature >= 0)) {
    throw new InvalidArgumentError(`temperature must be a finite number ≥ 0, got ${temperature}`, { field: "temperature" });
  }
  if (topK !== undefined && !(Number.isInteger(topK) && topK >= 0)) {
    throw new InvalidArgumentError(`topK must be an integer ≥ 0, got ${topK}`, { field: "topK" });
  }
  if (topP !== undefined && !(Number.isFinite(topP) && topP > 0 && topP <= 1)) {
    throw new InvalidArgumentError(`topP must be in (0, 1], got ${topP}`, { field: "topP" });
  }
  if (seed !== undefined && !Number.isSafeInteger(seed)) {
    throw new InvalidArgumentError(`seed must be an integer, got ${typeof seed === "number" ? seed : JSON.stringify(seed)}`, { field: "seed" });
  }
}

/** A stateful sampler: one PRNG stream per generation. */
export class Sampler {
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly seed: number;
  private readonly rng: Rng;
  private scratch = new Float32Array(0); // [V] scaled logits, then their exp
  private order = new Int32Array(0); // [V] token ids, nucleus first

  constructor(options: SamplingOptions = {}) {
    checkSamplingOptions(options);
    this.temperature = options.temperature ?? 1;
    this.topK = options.topK ?? 0;
    this.topP = options.topP ?? 1;
    this.seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
    this.rng = new Rng(this.seed);
  }

  get greedy(): boolean {
    return this.temperature === 0 || this.topK === 1;
  }

  /**
   * The next token id.
   * @param logits [V] one row of logits
   */
  sample(logits: Float32Array): number {
    if (this.greedy) return argmax(logits);
    const v = logits.length;
    if (this.scratch.length !== v) this.scratch = new Float32Array(v);
    const scaled = this.scratch; // [V]
    const invT = 1 / this.temperature;
    let max = -Infinity;
    for (let i = 0; i < v; i++) {
      const x = logits[i] * invT;
      scaled[i] = Number.isNaN(x) ? -Infinity : x;
      if (scaled[i] > max) max = scaled[i];
    }
    if (max === -Infinity) return argmax(logits);

    const k = this.topK > 0 ? Math.min(this.topK, v) : v;
    if (k < v) {
      // top-k by a heap (then top-p inside the top-k set, renormalised)
      const ids = topKIndices(scaled, k); // [k] most likely first
      const weights = expWeights(scaled, ids, max); // [k]
      let sum = 0;
      for (let j = 0; j < weights.length; j++) sum += weights[j];
      return this.drawFrom(ids, weights, nucleusSize(weights, this.topP * sum) || ids.length);
    }
    // no top-k: unnormalised probabilities in place, one exp per token
    const w = scaled; // [V] exp(x - max)
    let total = 0;
    for (let i = 0; i < v; i++) {
      w[i] = Math.exp(w[i] - max);
      total += w[i];
    }
    if (this.topP >= 1) {
      let u = this.rng.next() * total;
      let last = 0;
      for (let i = 0; i < v; i++) {
        if (w[i] > 0) last = i;
        u -= w[i];
        if (u < 0) return i;
      }
      return last; // rounding left u ≥ 0: the last token with non-zero weight
    }
    if (this.order.length !== v) this.order = new Int32Array(v);
    const keep = selectNucleus(w, this.topP * total, this.order);
    let sum = 0;
    for (let j = 0; j < keep; j++) sum += w[this.order[j]];
    let u = this.rng.next() * sum;
    for (let j = 0; j < keep; j++) {
      u -= w[this.order[j]];
      if (u < 0) return this.order[j];
    }
    return this.order[keep - 1];
  }

  /** Draw among the first `keep` candidates, proportionally to their weights. */
  private drawFrom(ids: Int32Array, weights: Float64Array, keep: number): number {
    let sum = 0;
    for (let j = 0; j < keep; j++) sum += weights[j];
    let u = this.rng.next() * sum;
    for (let j = 0; j < keep; j++) {
      u -= weights[j];
      if (u < 0) return ids[j];
    }
    return ids[keep - 1];
  }
}

/** exp(scaled[id] - max) for each candidate id: [ids.length]. */
function expWeights(scaled: Float32Array, ids: Int32Array, max: number): Float64Array {
  const w = new Float64Array(ids.length); // [n]
  for (let j = 0; j < ids.length; j++) w[j] = Math.exp(scaled[ids[j]] - max);
  return w;
}

/**
 * How many of the (descending) weights make the minimal nucleus: the smallest prefix whose sum reaches
 * `threshold`; 0 when the whole array stays below it. With threshold = sum (topP = 1) that is every weight.
 */
function nucleusSize(weights: Float64Array, threshold: number): number {
  let cum = 0;
  for (let j = 0; j < weights.length; j++) {
    cum += weights[j];
    if (cum >= threshold) return j + 1;
  }
  return 0;
}

/**
 * Moves the ids of the minimal nucleus to the front of `order` and returns its size: the fewest tokens,
 * most likely first, whose weights sum to at least `need`. Quickselect on cumulative mass (3-way partition
 * around a median-of-three pivot), expected O(V), no sort. The nucleus members come out in no particular
 * order, which does not change the distribution drawn from.
 * @param w [V] non-negative weights
 * @param order [V] scratch, overwritten
 */
export function selectNucleus(w: Float32Array, need: number, order: Int32Array): number {
  const v = w.length;
  for (let i = 0; i < v; i++) order[i] = i;
  let lo = 0;
  let hi = v;
  let acc = 0; // mass of order[0, lo), all heavier than anything in [lo, v)
  while (hi - lo > 1) {
    const a = w[order[lo]];
    const b = w[order[(lo + hi) >> 1]];
    const c = w[order[hi - 1]];
    const pivot = Math.max(Math.min(a, b), Math.min(Math.max(a, b), c)); // median of three
    // 3-way partition of [lo, hi): > pivot | == pivot | < pivot
    let gt = lo;
    let i = lo;
    let lt = hi;
    let massGt = 0;
    let countEq = 0;
    while (i < lt) {
      const id = order[i];
      const x = w[id];
      if (x > pivot) {
        order[i] = order[gt];
        order[gt] = id;
        massGt += x;
        gt++;
        i++;
      } else if (x < pivot) {
        lt--;
        order[i] = order[lt];
        order[lt] = id;
      } else {
        countEq++;
        i++;
      }
    }
    if (acc + massGt >= need) {
      hi = gt; // the nucleus ends inside the heavier part
    } else if (acc + massGt + countEq * pivot >= need) {
      // heavier part + just enough of the ties
      return Math.min(gt + Math.max(1, Math.ceil((need - acc - massGt) / pivot)), gt + countEq);
    } else {
      acc += massGt + countEq * pivot;
      lo = gt + countEq;
      if (lo >= hi) return Math.max(1, lo); // rounding: everything in range is in the nucleus
    }
  }
  return Math.max(1, hi);
}

/**
 * The probabilities the sampler draws from, for inspection and tests: [V], zero outside the kept set.
 * Same rules as `Sampler.sample` (greedy puts all mass on the argmax).
 * @param logits [V]
 */
export function samplingDistribution(logits: Float32Array, options: SamplingOptions = {}): Float64Array {
  checkSamplingOptions(options);
  const v = logits.length;
  const out = new Float64Array(v); // [V]
  const temperature = options.temperature ?? 1;
  const topK = options.topK ?? 0;
  const topP = options.topP ?? 1;
  if (temperature === 0 || topK === 1) {
    out[argmax(logits)] = 1;
    return out;
  }
  const scaled = Float32Array.from(logits, (x) => (Number.isNaN(x) ? -Infinity : x / temperature)); // [V]
  const k = topK > 0 ? Math.min(topK, v) : v;
  const ids = topKIndices(scaled, k); // [k] most likely first
  const max = scaled[ids[0]];
  let total = 0;
  for (let i = 0; i < v; i++) total += Math.exp(scaled[i] - max);
  const weights = expWeights(scaled, ids, max); // [k]
  const norm = k === v ? total : weights.reduce((a, b) => a + b, 0);
  const keep = nucleusSize(weights, topP * norm) || ids.length;
  let sum = 0;
  for (let j = 0; j < keep; j++) sum += weights[j];
  for (let j = 0; j < keep; j++) out[ids[j]] = weights[j] / sum;
  return out;
}
