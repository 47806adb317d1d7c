/**
 * File-system failures as one-line typed errors: Node's ErrnoException (EACCES, EROFS, ENOSPC, ENOTDIR, ...)
 * becomes a FileSystemError naming the path, what failed and what to do about it.
 */
import { lstatSync, mkdirSync, statSync, type Stats } from "node:fs";
import { dirname, resolve } from "node:path";
import { FileSystemError, OnepassError } from "../errors.js";

const REASONS: Record<string, string> = {
  EACCES: "permission denied: choose a location you can write to",
  EPERM: "operation not permitted: choose a location you can write to",
  EROFS: "read-only file system: choose a writable location",
  ENOSPC: "no space left on device: free some space or choose another disk",
  EDQUOT: "disk quota exceeded: free some space or choose another disk",
  ENOTDIR: "a part of the path is not a folder",
  EISDIR: "is a folder, expected a file",
  EEXIST: "already exists",
  ENOENT: "no such file or folder",
  ENAMETOOLONG: "name too long",
  ELOOP: "too many symbolic links",
  EBUSY: "busy (a mount point or a folder in use): choose another path",
  EMFILE: "too many open files",
  ENXIO: "no such device (a FIFO or socket without a peer?)",
  EINVAL: "invalid argument for this file system",
};

/** True for Node's system errors (they carry a string `code` such as "ENOSPC" and a `syscall`). */
export function isErrno(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === "string" && typeof (err as NodeJS.ErrnoException).syscall === "string";
}

/**
 * A Node system error as a typed error about `path` ("PATH: cannot write (ENOSPC: no space left ...)");
 * anything else (an OnepassError already, or a bug) is returned as it is.
 */
export function fsError(err: unknown, path: string | undefined, action: string): unknown {
  if (err instanceof OnepassError || !isErrno(err)) return err; // typed already, or a bug: keep its stack
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === "string" ? e.code : undefined;
  const where = path ?? e?.path;
  const reason = code !== undefined ? `${code}: ${REASONS[code] ?? (e.message ?? "").replace(/^[A-Z]+: /, "").split("\n")[0]}` : String((e as Error)?.message ?? e).split("\n")[0];
  return new FileSystemError(`cannot ${action} (${reason})`, where !== undefined ? { file: where } : {}, { cause: err });
}

/** Runs `fn`, turning a file-system failure into fsError(err, path, action). */
export function withFs<T>(path: string, action: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw fsError(err, path, action);
  }
}

/** lstat that answers undefined for a missing path (and a typed error for other failures). */
export function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw fsError(err, path, "inspect");
  }
}

/** "a FIFO", "a socket", ... for a path that is neither a regular file nor a folder. */
function specialKind(st: Stats): string {
  return st.isFIFO() ? "a FIFO (named pipe)" : st.isSocket() ? "a socket" : st.isCharacterDevice() ? "a character device" : st.isBlockDevice() ? "a block device" : "not a regular file";
}

/**
 * Throws FileSystemError unless `path` (after symlinks) is a regular file: opening a FIFO blocks forever and a
 * device streams without end, so the type is checked before any open.
 */
export function assertRegularFile(path: string): void {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    throw fsError(err, path, "open");
  }
  if (st.isDirectory()) throw new FileSystemError("is a folder, expected a file", { file: path });
  if (!st.isFile()) throw new FileSystemError(`is ${specialKind(st)}, expected a regular file`, { file: path });
}

/**
 * mkdir -p that fails fast: each missing component is created in turn, and an existing one that is not a
 * folder, or a place where folders cannot be made (/proc, a read-only disk), is a FileSystemError at once
 * (Node's recursive mkdir can loop on /proc).
 */
export function makeDirs(path: string): void {
  const full = resolve(path);
  const missing: string[] = [];
  let p = full;
  for (;;) {
    let st: Stats | undefined;
    try {
      st = statSync(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw fsError(err, p, "inspect");
    }
    if (st !== undefined) {
      if (!st.isDirectory()) throw new FileSystemError(`is not a folder (${st.isFile() ? "a file" : specialKind(st)}), so ${full} cannot be created`, { file: p });
      break;
    }
    missing.push(p);
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST" && statSync(dir).isDirectory()) continue; // made meanwhile
      throw fsError(err, dir, "create the folder");
    }
  }
}
