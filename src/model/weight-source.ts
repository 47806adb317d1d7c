/** Building blocks for WeightSources: one over a table of tensors, and a delegating copy to override parts of. */
import { ModelFormatError } from "../errors.js";
import type { TensorInfo, WeightSource } from "./spec.js";

/**
 * A WeightSource over `table` (name → entry holding its TensorInfo): list/has/info answer from the table
 * (shapes copied, so callers cannot alter it), `read` turns an entry into float32 values. An unknown name throws
 * ModelFormatError naming `path` and the name (`what` says what was looked for, e.g. "float initializer").
 */
export function tableWeightSource<E extends { info: TensorInfo }>(
  path: string,
  table: ReadonlyMap<string, E>,
  read: (entry: E) => Float32Array,
  close: () => void,
  what = "tensor",
): WeightSource {
  const get = (name: string): E => {
    const entry = table.get(name);
    if (entry === undefined) throw new ModelFormatError(`no such ${what}`, { file: path, field: name });
    return entry;
  };
  const copyInfo = (i: TensorInfo): TensorInfo => ({ ...i, shape: i.shape.slice() });
  return {
    path,
    list: () => [...table.values()].map((e) => copyInfo(e.info)),
    has: (name) => table.has(name),
    info: (name) => copyInfo(get(name).info),
    readF32: (name) => read(get(name)),
    close,
  };
}

/** The methods of `w` bound to it, as a plain object: spread it and override some to wrap a source. */
export function delegatingWeightSource(w: WeightSource): WeightSource {
  return {
    path: w.path,
    list: () => w.list(),
    has: (name) => w.has(name),
    info: (name) => w.info(name),
    readF32: (name) => w.readF32(name),
    ...(w.readInt4 !== undefined ? { readInt4: (name: string) => w.readInt4!(name) } : {}),
    close: () => w.close(),
  };
}
