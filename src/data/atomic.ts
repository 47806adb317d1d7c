/** Atomic file writes: write a temp file beside the target, fsync, rename over it. */
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from "node:fs";

/** Suffix of every temp file these helpers create (a cache dir holding one after a crash cleans it up). */
export const TMP_SUFFIX = ".tmp";

export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.${process.pid}${TMP_SUFFIX}`;
  const fd = openSync(tmp, "w");
  try {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
