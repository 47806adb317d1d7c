/**
 * Matching a dataset's label names to a probe's: a probe trained with names (`non-toxic`/`toxic`) scored on
 * a set labelled `0`/`1` needs to be told which is which; nothing is guessed.
 */
import { InvalidArgumentError } from "../errors.js";

/**
 * Parses `FROM=TO,FROM=TO` (dataset label name → probe label name). Names are trimmed; a name may not be
 * mapped twice.
 */
export function parseLabelMap(spec: string, field = "--label-map"): Map<string, string> {
  const map = new Map<string, string>();
  for (const [i, part] of spec.split(",").entries()) {
    const eq = part.indexOf("=");
    const from = part.slice(0, eq).trim(), to = part.slice(eq + 1).trim();
    if (eq < 0 || from === "" || to === "") throw new InvalidArgumentError(`entry ${i + 1} '${part}' is not FROM=TO (dataset label = probe label)`, { field });
    if (map.has(from)) throw new InvalidArgumentError(`dataset label '${from}' is mapped twice`, { field });
    map.set(from, to);
  }
  return map;
}

/**
 * [C_data] probe class index of each dataset class. Without a map, names must match exactly; with one,
 * mapped names are translated first. Every dataset class must land on a probe class, and no two on the same one.
 */
export function labelIndexMap(dataNames: readonly string[], probeNames: readonly string[], map?: ReadonlyMap<string, string>, field = "--label-map"): Int32Array {
  if (map !== undefined) {
    for (const [from, to] of map) {
      if (!dataNames.includes(from)) throw new InvalidArgumentError(`'${from}' is not a dataset label (dataset labels: ${dataNames.join(", ")})`, { field });
      if (!probeNames.includes(to)) throw new InvalidArgumentError(`'${to}' is not a probe label (probe labels: ${probeNames.join(", ")})`, { field });
    }
  }
  const out = new Int32Array(dataNames.length); // [C_data]
  const used = new Map<number, string>();
  dataNames.forEach((name, c) => {
    const target = map?.get(name) ?? name;
    const k = probeNames.indexOf(target);
    if (k < 0) {
      throw new InvalidArgumentError(
        `dataset label '${name}' is not a probe label [${probeNames.join(", ")}]; map it, e.g. ${field} ${dataNames.map((n, i) => `${n}=${probeNames[i] ?? probeNames[0]}`).join(",")}`,
        { field },
      );
    }
    if (used.has(k)) throw new InvalidArgumentError(`dataset labels '${used.get(k)}' and '${name}' both map to probe label '${target}'`, { field });
    used.set(k, name);
    out[c] = k;
  });
  return out;
}
