/** Atomic file writes: write a temp file beside the target, fsync, rename over it. */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { InvalidArgumentError } from "../errors.js";

/** Suffix of every temp file these helpers create (a cache dir holding one after a crash cleans it up). */
export const TMP_SUFFIX = ".tmp";

/** Writes `data` to `path` atomically; an unwritable path (missing folder, no permission, full disk) throws InvalidArgumentError naming it. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.${process.pid}${TMP_SUFFIX}`;
  let fd: number;
  try {
    fd = openSync(tmp, "w");
  } catch (err) {
    throw new InvalidArgumentError(`cannot write (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { file: path }, { cause: err });
  }
  try {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
  } catch (err) {
    try { closeSync(fd); } catch { /* already closed */ }
    rmSync(tmp, { force: true });
    throw new InvalidArgumentError(`cannot write (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { file: path }, { cause: err });
  }
}
