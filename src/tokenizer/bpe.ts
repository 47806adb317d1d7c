/**
 * Byte-pair merging over token ids, for GGUF vocabularies: the model step of the tokenizer (after the
 * normalizer and pre-tokenizer of `@huggingface/tokenizers`) with the library BPE's exact results (lowest merge
 * rank first, leftmost first among equal ranks; byte fallback, unknown-token fusing, ignore_merges) in a
 * fraction of its memory. The library keeps the vocabulary three times (config object, Map, array), every merge
 * as a two-string array and once more as a JSON string key: ~190 MiB of peak heap for a 152k-token vocabulary.
 * Here the merges are one open-addressing table over typed arrays (MergeTable: no per-merge heap object for the
 * garbage collector to trace; a Map of number keys measured 14.7 MB of table plus ~300k boxed numbers for 151k
 * merges, and the whole tokenizer ~22 ms of every full GC), and the token → id Map is shared with the tokenizer's
 * tokenToId.
 */

/** What a vocabulary's BPE needs besides its tokens and merges. */
export interface CompactBpeOptions {
  /** Pieces outside the vocabulary become their UTF-8 bytes' `<0xXX>` tokens (SentencePiece). */
  byteFallback: boolean;
  /** Unknown-token id (pieces nothing else covers); consecutive unknowns fuse into one when fuseUnk. */
  unkId?: number;
  fuseUnk: boolean;
  /** A whole pre-token that is itself a token is taken without merging (Llama 3). */
  ignoreMerges: boolean;
}

/** Words of at most this many UTF-16 units are cached (as the library does), up to CACHE_ENTRIES words. */
const CACHE_MAX_LENGTH = 256;
const CACHE_ENTRIES = 10_000;
/**
 * (left id, right id) → (rank, merged id) with linear probing in power-of-two typed arrays, at most half full.
 * Setting a pair again replaces its entry (a repeated merge takes its last rank, as a Map built in order does).
 */
class MergeTable {
  private readonly mask: number;
  /** [capacity] left id of the slot's pair, -1 = empty */
  private readonly left: Int32Array;
  /** [capacity] right id */
  private readonly right: Int32Array;
  /** [capacity] the merge's rank */
  readonly rank: Int32Array;
  /** [capacity] the merged text's id, -1 = the merged text is no token */
  readonly merged: Int32Array;

  constructor(entries: number) {
    let capacity = 16;
    while (capacity < 2 * entries) capacity *= 2;
    this.mask = capacity - 1;
    this.left = new Int32Array(capacity).fill(-1);
    this.right = new Int32Array(capacity);
    this.rank = new Int32Array(capacity);
    this.merged = new Int32Array(capacity);
  }

  /** The slot holding (l, r), or the empty slot where it would go. */
  private slot(l: number, r: number): number {
    let i = (Math.imul(l, 0x9e3779b1) ^ Math.imul(r, 0x85ebca6b)) & this.mask;
    while (this.left[i] !== -1 && (this.left[i] !== l || this.right[i] !== r)) i = (i + 1) & this.mask;
    return i;
  }

  set(l: number, r: number, rank: number, merged: number): void {
    const i = this.slot(l, r);
    this.left[i] = l;
    this.right[i] = r;
    this.rank[i] = rank;
    this.merged[i] = merged;
  }

  /** The slot of (l, r) (read rank[slot], merged[slot]), or -1 when the pair does not merge. */
  find(l: number, r: number): number {
    const i = this.slot(l, r);
    return this.left[i] === -1 ? -1 : i;
  }
}

export class CompactBpe {
  /** Merge parts that are not tokens themselves get ids from V on (rare; keeps odd merge lists exact). */
  private readonly extraIds = new Map<string, number>();
  private readonly extraTexts: string[] = [];
  private readonly merges: MergeTable;
  private readonly cache = new Map<string, readonly number[]>();
  private readonly byteIds: (number | undefined)[];

  /**
   * @param tokens  [V] token texts
   * @param tokenToId text → id (the first id of a duplicated text), shared with the tokenizer
   * @param merges  pairs in rank order (rank = index)
   */
  constructor(
    private readonly tokens: readonly string[],
    private readonly tokenToId: ReadonlyMap<string, number>,
    merges: Iterable<readonly [string, string]>,
    private readonly options: CompactBpeOptions,
  ) {
    const pairs: number[] = []; // [M, 2] symbol ids, flattened
    for (const [left, right] of merges) pairs.push(this.symbolId(left), this.symbolId(right));
    this.merges = new MergeTable(pairs.length / 2);
    for (let r = 0; r < pairs.length / 2; r++) {
      const text = this.text(pairs[2 * r]) + this.text(pairs[2 * r + 1]);
      const merged = tokenToId.get(text) ?? this.extraIds.get(text) ?? -1;
      this.merges.set(pairs[2 * r], pairs[2 * r + 1], r, merged);
    }
    this.byteIds = Array.from({ length: 256 }, (_, b) => tokenToId.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`));
  }

  private symbolId(text: string): number {
    const id = this.tokenToId.get(text) ?? this.extraIds.get(text);
    if (id !== undefined) return id;
    const extra = this.tokens.length + this.extraTexts.length;
    this.extraIds.set(text, extra);
    this.extraTexts.push(text);
    return extra;
  }

  private text(id: number): string {
    return id < this.tokens.length ? this.tokens[id] : this.extraTexts[id - this.tokens.length];
  }

  /** Token ids of the pre-tokenised `words`, appended to `out`. */
  encode(words: readonly string[], out: number[]): void {
    const start = out.length;
    for (const word of words) {
      if (word.length === 0) continue;
      if (this.options.ignoreMerges) {
        const whole = this.tokenToId.get(word);
        if (whole !== undefined) {
          out.push(whole);
          continue;
        }
      }
      const cached = this.cache.get(word);
      if (cached !== undefined) {
        for (const id of cached) out.push(id);
        continue;
      }
      const ids = this.word(word);
      if (word.length < CACHE_MAX_LENGTH) {
        if (this.cache.size >= CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
        this.cache.set(word, ids);
      }
      for (const id of ids) out.push(id);
    }
    if (this.options.fuseUnk && this.options.unkId !== undefined) {
      // runs of unknown tokens become one
      const unk = this.options.unkId;
      let w = start;
      for (let r = start; r < out.length; r++) {
        if (out[r] === unk && w > start && out[w - 1] === unk) continue;
        out[w++] = out[r];
      }
      out.length = w;
    }
  }

  /** One word: merge its characters, then map the pieces to ids (byte fallback / unknown for the rest). */
  private word(word: string): number[] {
    const chars = Array.from(word);
    const n = chars.length;
    // symbols as a linked list over the characters' positions; ids[i] < 0: a piece with no id, text in texts[i]
    const ids = new Float64Array(n); // [n]
    const texts: (string | undefined)[] = new Array(n);
    const next = new Int32Array(n); // [n] -1 = end
    const prev = new Int32Array(n); // [n] -1 = start
    const version = new Int32Array(n); // [n] bumped when the symbol changes or dies
    for (let i = 0; i < n; i++) {
      const id = this.tokenToId.get(chars[i]) ?? this.extraIds.get(chars[i]);
      ids[i] = id ?? -1;
      if (id === undefined) texts[i] = chars[i];
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // candidate merges in a binary heap ordered by (rank, left position); stale entries are skipped on pop
    const heap: number[][] = []; // [rank, left, leftVersion, right, rightVersion, merged]
    const less = (a: number[], b: number[]) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
    const push = (left: number) => {
      const right = next[left];
      if (right < 0 || ids[left] < 0 || ids[right] < 0) return;
      const m = this.merges.find(ids[left], ids[right]);
      if (m < 0) return;
      const entry = [this.merges.rank[m], left, version[left], right, version[right], this.merges.merged[m]];
      heap.push(entry);
      for (let c = heap.length - 1; c > 0; ) {
        const p = (c - 1) >> 1;
        if (!less(heap[c], heap[p])) break;
        [heap[c], heap[p]] = [heap[p], heap[c]];
        c = p;
      }
    };
    const pop = (): number[] => {
      const top = heap[0];
      const last = heap.pop()!;
      if (heap.length > 0) {
        heap[0] = last;
        for (let c = 0; ; ) {
          const l = 2 * c + 1;
          const r = l + 1;
          let m = c;
          if (l < heap.length && less(heap[l], heap[m])) m = l;
          if (r < heap.length && less(heap[r], heap[m])) m = r;
          if (m === c) break;
          [heap[c], heap[m]] = [heap[m], heap[c]];
          c = m;
        }
      }
      return top;
    };
    for (let i = 0; i + 1 < n; i++) push(i);
    while (heap.length > 0) {
      const [, left, lv, right, rv, merged] = pop();
      if (version[left] !== lv || version[right] !== rv || next[left] !== right) continue;
      // the left symbol absorbs the right one and keeps its position (the tie-break of later merges)
      const text = merged < 0 ? this.text(ids[left]) + this.text(ids[right]) : undefined;
      ids[left] = merged;
      texts[left] = text;
      version[left]++;
      version[right]++;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      if (prev[left] >= 0) push(prev[left]);
      push(left);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0 && i < n; i = next[i]) {
      const id = ids[i];
      if (id >= 0 && id < this.tokens.length) {
        out.push(id);
        continue;
      }
      this.unknownPiece(id >= 0 ? this.text(id) : texts[i]!, out);
    }
    return out;
  }

  /** A piece that is not a token: its bytes' tokens when byte fallback has them all, else the unknown token. */
  private unknownPiece(text: string, out: number[]): void {
    if (this.options.byteFallback) {
      const bytes = new TextEncoder().encode(text);
      const ids = Array.from(bytes, (b) => this.byteIds[b]);
      if (ids.every((x) => x !== undefined)) {
        for (const x of ids) out.push(x!);
        return;
      }
    }
    // like the library: nothing at all when the vocabulary has no unknown token
    if (this.options.unkId !== undefined) out.push(this.options.unkId);
  }
}
