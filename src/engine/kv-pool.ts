/**
 * The KV cache of several sequences that share one ORT session ("append" graphs): per layer one key and one value
 * buffer [slots, kvH, capacity, hd] owned by JS and fed to ORT without a copy. Sequence s lives in one slot; its
 * first `length` positions are valid, later ones hold stale values that are never read (GroupQueryAttention
 * reads the first seqlens_k rows of each batch row, the plain-op path masks the rest).
 *
 * A batched decode run needs its sequences in consecutive slots (the fed tensor is a view [n, kvH, capacity, hd]
 * of the buffer): `gather` swaps slots so that the given sequences occupy slots 0 .. n-1 in order. With every
 * running request in the batch that is free; a sequence that sat out a step (its consumer was slow) costs one
 * swap of two slots.
 */
import { InvalidArgumentError } from "../errors.js";

/** Capacity is a multiple of this many positions. */
const ROW_STEP = 64;
const roundRows = (n: number) => Math.max(ROW_STEP, Math.ceil(n / ROW_STEP) * ROW_STEP);

/** One sequence's place in the pool. */
export class KvSequence {
  /** Cached positions. */
  length = 0;
  closed = false;
  constructor(
    /** Slot index in the pool buffers (changes when the pool compacts). */
    public slot: number,
  ) {}
}

export class KvPool {
  /** Per layer: key and value [slots, kvH, capacity, hd]. */
  private buffers: { key: Float32Array; value: Float32Array }[] = [];
  private slots = 0;
  private capacityRows = 0;
  /** Which sequence holds each slot (null = free). */
  private owners: (KvSequence | null)[] = [];

  constructor(
    private readonly blocks: number,
    private readonly kvHeads: number,
    private readonly headDim: number,
    /** Most positions a sequence can hold. */
    private readonly maxPositions: number,
  ) {}

  get capacity(): number {
    return this.capacityRows;
  }

  /** Number of sequences open. */
  get open(): number {
    return this.owners.filter((o) => o !== null).length;
  }

  /** Bytes held by the buffers (for memory reports). */
  get bytes(): number {
    return this.buffers.length * 2 * this.slots * this.kvHeads * this.capacityRows * this.headDim * 4;
  }

  /** A new empty sequence in a free slot (the pool grows when none is free). */
  openSequence(): KvSequence {
    let slot = this.owners.indexOf(null);
    if (slot < 0) {
      slot = this.owners.length;
      this.resize(Math.max(1, this.slots * 2, slot + 1), Math.max(this.capacityRows, ROW_STEP));
    }
    const seq = new KvSequence(slot);
    this.owners[slot] = seq;
    return seq;
  }

  /** Frees the sequence's slot (and shrinks the buffers when far fewer / shorter sequences remain). */
  closeSequence(seq: KvSequence): void {
    if (seq.closed) return;
    seq.closed = true;
    this.owners[seq.slot] = null;
    this.trim();
  }

  /**
   * Shrinks the buffers to what the open sequences need (slots rounded up to a power of two, capacity to a
   * multiple of ROW_STEP) when that is under half of what they hold: one long or many concurrent requests must not pin their memory after
   * they end (the slots share one capacity, and ORT's attention allocates its present output at that size).
   */
  trim(): void {
    const open = this.owners.filter((o): o is KvSequence => o !== null);
    const longest = open.reduce((m, q) => Math.max(m, q.length), 0);
    const cap = Math.min(roundRows(longest + 1), Math.max(this.maxPositions, longest));
    let slots = 1;
    while (slots < open.length) slots *= 2;
    if (cap * 2 > this.capacityRows && slots * 2 > this.slots) return;
    this.gather(open);
    this.resize(Math.min(this.slots, Math.max(slots, open.length)), Math.min(this.capacityRows, Math.max(cap, longest)));
  }

  /**
   * Makes room for `total` positions in every slot: capacity grows by an eighth (at least to `total`), in
   * multiples of ROW_STEP, at most maxPositions. Not by doubling: ORT's GroupQueryAttention zero-fills its
   * present output [B, kvH, capacity, hd] of every layer on every run, so slack capacity costs memory bandwidth on
   * each decode step (a 545-position sequence in 1024 rows nearly doubled it), while a resize copies the pool
   * once per eighth of growth.
   */
  ensureCapacity(total: number): void {
    if (total <= this.capacityRows) return;
    const want = Math.max(total, Math.ceil(this.capacityRows * 1.125));
    this.resize(this.slots, Math.min(roundRows(want), Math.max(this.maxPositions, total)));
  }

  /** Re-lays the buffers for `slots` × `capacity`, keeping every sequence's valid rows. */
  private resize(slots: number, capacity: number): void {
    const { kvHeads: KV, headDim: hd } = this;
    const oldCap = this.capacityRows;
    const grow = (old: Float32Array | undefined): Float32Array => {
      const dst = new Float32Array(slots * KV * capacity * hd); // [slots, kvH, capacity, hd]
      if (old !== undefined) {
        this.owners.forEach((seq, s) => {
          if (seq === null || seq.length === 0 || s >= slots) return;
          for (let h = 0; h < KV; h++) {
            const from = (s * KV + h) * oldCap * hd;
            dst.set(old.subarray(from, from + seq.length * hd), (s * KV + h) * capacity * hd);
          }
        });
      }
      return dst;
    };
    this.buffers = Array.from({ length: this.blocks }, (_, i) => ({ key: grow(this.buffers[i]?.key), value: grow(this.buffers[i]?.value) }));
    while (this.owners.length < slots) this.owners.push(null);
    this.owners.length = slots; // a shrink has gathered the open sequences below `slots` first
    this.slots = slots;
    this.capacityRows = capacity;
  }

  /** Moves `seqs` into slots 0 .. n-1 in this order (swapping with whatever sits there). */
  gather(seqs: readonly KvSequence[]): void {
    seqs.forEach((seq, want) => {
      if (seq.closed) throw new InvalidArgumentError("a closed sequence cannot run", { field: "sequence" });
      if (seq.slot !== want) this.swap(seq.slot, want);
    });
  }

  private swap(a: number, b: number): void {
    const rows = this.kvHeads * this.capacityRows * this.headDim; // one slot [kvH, capacity, hd]
    const tmp = new Float32Array(rows); // [kvH, capacity, hd]
    for (const buf of this.buffers) {
      for (const x of [buf.key, buf.value]) {
        tmp.set(x.subarray(a * rows, (a + 1) * rows));
        x.copyWithin(a * rows, b * rows, (b + 1) * rows);
        x.set(tmp, b * rows);
      }
    }
    const sa = this.owners[a];
    const sb = this.owners[b];
    this.owners[a] = sb;
    this.owners[b] = sa;
    if (sa !== null) sa.slot = b;
    if (sb !== null) sb.slot = a;
  }

  /** Layer i's key or value buffer for slots [first, first + n): a view [n, kvH, capacity, hd]. */
  view(layer: number, kind: "key" | "value", first: number, n: number): Float32Array {
    const rows = this.kvHeads * this.capacityRows * this.headDim;
    return this.buffers[layer][kind].subarray(first * rows, (first + n) * rows);
  }

  /**
   * Appends one run's rows to `seq` at its current length: src is the run's new_key_values [B, kvH, T, hd],
   * `b` the sequence's batch row. Does not advance seq.length (the caller does, once per run).
   */
  append(layer: number, kind: "key" | "value", seq: KvSequence, src: Float32Array, b: number, T: number): void {
    const { kvHeads: KV, headDim: hd, capacityRows: cap } = this;
    const dst = this.buffers[layer][kind];
    for (let h = 0; h < KV; h++) {
      const from = (b * KV + h) * T * hd;
      dst.set(src.subarray(from, from + T * hd), ((seq.slot * KV + h) * cap + seq.length) * hd);
    }
  }

  /** Drops every buffer (the sequences stay valid objects but must not run again). */
  clear(): void {
    for (const o of this.owners) if (o !== null) o.closed = true;
    this.buffers = [];
    this.owners = [];
    this.slots = 0;
    this.capacityRows = 0;
  }
}
