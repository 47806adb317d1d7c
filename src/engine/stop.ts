/**
 * Text-level stop strings. Generated text arrives in pieces that need not line up with a stop string (one
 * stop string may span several tokens, one token may hold the end of a stop string and more), so the
 * matcher holds back any tail that could still grow into a stop string and releases it once it cannot.
 * The stop string itself is never released.
 */
import { InvalidArgumentError } from "../errors.js";

export interface StopCheck {
  /** Text that is safe to emit now. */
  text: string;
  /** True when a stop string was found; `text` then ends right before it and nothing more comes. */
  stopped: boolean;
  /** The stop string found (when stopped). */
  stop?: string;
}

export class StopStringMatcher {
  private readonly stops: string[];
  private held = ""; // text received but not yet released
  private done = false;

  constructor(stops: readonly string[]) {
    stops.forEach((s, i) => {
      if (typeof s !== "string" || s.length === 0) {
        throw new InvalidArgumentError("stop strings must be non-empty strings", { field: `stop[${i}]` });
      }
    });
    this.stops = [...stops];
  }

  /** Feed the next piece of generated text. */
  push(piece: string): StopCheck {
    if (this.done) return { text: "", stopped: true };
    this.held += piece;
    let first = -1; // earliest stop string start in `held`
    let found = "";
    for (const s of this.stops) {
      const at = this.held.indexOf(s);
      if (at >= 0 && (first < 0 || at < first)) {
        first = at;
        found = s;
      }
    }
    if (first >= 0) {
      this.done = true;
      const text = this.held.slice(0, first);
      this.held = "";
      return { text, stopped: true, stop: found };
    }
    const keep = this.partialTail();
    const text = this.held.slice(0, this.held.length - keep);
    this.held = this.held.slice(this.held.length - keep);
    return { text, stopped: false };
  }

  /** End of generation without a stop string: release what was held back. */
  flush(): string {
    const text = this.done ? "" : this.held;
    this.held = "";
    return text;
  }

  /** Length of the longest tail of `held` that is a proper prefix of some stop string. */
  private partialTail(): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.held.length); n > best; n--) {
        if (this.held.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
