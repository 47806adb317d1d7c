/** Positioned reads from model files, with typed errors naming the file, the field and the byte offset. */
import { openSync, readSync } from "node:fs";
import { ModelFormatError } from "../errors.js";
import { assertRegularFile } from "../util/fs-errors.js";

/** Opens `path` for reading; a missing or unreadable file throws ModelFormatError naming it. */
export function openForReading(path: string): number {
  try {
    assertRegularFile(path); // a FIFO would block the open forever
  } catch (err) {
    throw new ModelFormatError((err as Error).message.replace(/^[^:]*: /, ""), { file: path }, { cause: err });
  }
  try {
    return openSync(path, "r");
  } catch (err) {
    throw new ModelFormatError(`cannot open file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { file: path }, { cause: err });
  }
}

/**
 * Exactly `length` bytes at `position` of the open file `fd` (readSync may return fewer than asked, so it loops).
 * A file that ends early throws ModelFormatError naming `field` and the offset where its data ran out.
 */
export function readExactly(fd: number, file: string, position: number, length: number, field?: string): Uint8Array {
  const buf = new Uint8Array(length); // [length]
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) {
      throw new ModelFormatError(`file is truncated: it ends after ${position + done} bytes, the data needs ${position + length}`, { file, field, offset: position + done });
    }
    done += n;
  }
  return buf;
}
