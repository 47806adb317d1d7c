/**
 * Splits text around special/added tokens before the model sees it, the way llama.cpp's
 * `tokenizer_st_partition` does: tokens are tried longest text first, each one splitting every remaining
 * raw-text fragment at all of its occurrences.
 */

export interface SpecialTokenEntry {
  id: number;
  text: string;
  /** Matched only when the caller asks for special-token parsing (control tokens). */
  onlyWhenParsingSpecial: boolean;
  /** Swallow whitespace to the left / right of the token (HF AddedToken lstrip / rstrip). */
  lstrip?: boolean;
  rstrip?: boolean;
}

/** A piece of the input: raw text to run through the model, or an already-resolved token id. */
export type Fragment = string | number;

export class SpecialTokenSplitter {
  private readonly entries: SpecialTokenEntry[];
  /** Every entry by id when some entry strips whitespace, else empty (most vocabularies: no strip pass). */
  private readonly entryById: ReadonlyMap<number, SpecialTokenEntry>;

  constructor(entries: readonly SpecialTokenEntry[]) {
    // Longest first; on equal length, lower id first (a stable, documented order).
    this.entries = entries.filter((e) => e.text.length > 0).sort((a, b) => b.text.length - a.text.length || a.id - b.id);
    // built once here, not per split(): encode() is called for every prompt
    const anyStrip = this.entries.some((e) => e.lstrip || e.rstrip);
    this.entryById = new Map(anyStrip ? this.entries.map((e) => [e.id, e]) : []);
  }

  get size(): number {
    return this.entries.length;
  }

  split(text: string, parseSpecial: boolean): Fragment[] {
    let fragments: Fragment[] = text.length > 0 ? [text] : [];
    for (const entry of this.entries) {
      if (entry.onlyWhenParsingSpecial && !parseSpecial) continue;
      let touched = false;
      const next: Fragment[] = [];
      for (const fragment of fragments) {
        if (typeof fragment !== "string" || !fragment.includes(entry.text)) {
          next.push(fragment);
          continue;
        }
        touched = true;
        let start = 0;
        for (let at = fragment.indexOf(entry.text); at >= 0; at = fragment.indexOf(entry.text, start)) {
          if (at > start) next.push(fragment.slice(start, at));
          next.push(entry.id);
          start = at + entry.text.length;
        }
        if (start < fragment.length) next.push(fragment.slice(start));
      }
      if (touched) fragments = next;
    }
    return this.applyStrip(fragments);
  }

  private applyStrip(fragments: Fragment[]): Fragment[] {
    if (this.entryById.size === 0) return fragments;
    const out = fragments.slice();
    for (let i = 0; i < out.length; i++) {
      const f = out[i];
      if (typeof f !== "number") continue;
      const e = this.entryById.get(f);
      if (e?.lstrip && i > 0 && typeof out[i - 1] === "string") out[i - 1] = (out[i - 1] as string).trimEnd();
      if (e?.rstrip && i + 1 < out.length && typeof out[i + 1] === "string") out[i + 1] = (out[i + 1] as string).trimStart();
    }
    return out.filter((f) => typeof f === "number" || f.length > 0);
  }
}
