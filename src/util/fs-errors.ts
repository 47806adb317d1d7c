/**
 * File-system failures as one-line typed errors: Node's ErrnoException (EACCES, EROFS, ENOSPC, ENOTDIR, ...)
 * becomes a FileSystemError naming the path, what failed and what to do about it.
 */
import { lstatSync, type Stats } from "node:fs";
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

/** `err` as a typed error about `path` ("cannot write PATH (ENOSPC): no space left ..."); OnepassErrors pass through. */
export function fsError(err: unknown, path: string | undefined, action: string): OnepassError {
  if (err instanceof OnepassError) return err;
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
