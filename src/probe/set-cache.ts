/**
 * A least-recently-used cache of things built for an exact set of probe objects (in order): compiled sessions,
 * summary readers. Keys are object identities, so a reloaded probe is a new set.
 */
import type { Probe } from "./probe.js";

const probeIds = new WeakMap<Probe, number>();
let nextId = 0;

/** A key naming these probe objects, in this order. */
function setKey(probes: readonly Probe[]): string {
  return probes
    .map((p) => {
      let id = probeIds.get(p);
      if (id === undefined) probeIds.set(p, (id = nextId++));
      return id;
    })
    .join(",");
}

export class ProbeSetCache<T> {
  private readonly entries = new Map<string, T>();

  /**
   * @param size sets kept at once
   * @param create builds the value of a set not in the cache (a rejected Promise value is dropped from the cache)
   * @param evict releases a value pushed out of the cache
   */
  constructor(
    private readonly size: number,
    private readonly create: (probes: readonly Probe[]) => T,
    private readonly evict: (value: T) => void = () => {},
  ) {}

  get(probes: readonly Probe[]): T {
    const key = setKey(probes);
    let hit = this.entries.get(key);
    if (hit !== undefined) {
      this.entries.delete(key); // re-inserted below: most recently used last
    } else {
      hit = this.create(probes);
      if (hit instanceof Promise) hit.catch(() => this.entries.delete(key));
      if (this.entries.size >= this.size) {
        const [oldKey, old] = this.entries.entries().next().value as [string, T];
        this.entries.delete(oldKey);
        this.evict(old);
      }
    }
    this.entries.set(key, hit);
    return hit;
  }
}
