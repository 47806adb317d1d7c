/** Where the CLI writes an HTML page: a new file, or an earlier page of the same kind (nothing a user wrote is lost). */
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { InvalidArgumentError } from "../errors.js";
import { lstatOrUndefined } from "../util/fs-errors.js";

/**
 * Throws unless `path` can take a page: its folder exists, and any file already there starts with `marker`
 * (the generator tag an earlier onepass page of this kind carries). `flag` names the option in errors.
 */
export function checkPageTarget(path: string, marker: string, flag: string): void {
  const dir = dirname(resolve(path));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new InvalidArgumentError("report folder does not exist", { file: dir, field: flag });
  const st = lstatOrUndefined(path);
  if (st === undefined) return;
  let ours = false;
  if (st.isFile()) {
    const fd = openSync(path, "r");
    try {
      const head = Buffer.alloc(marker.length + 512);
      ours = head.subarray(0, readSync(fd, head, 0, head.length, 0)).toString("utf8").includes(marker);
    } finally {
      closeSync(fd);
    }
  }
  if (!ours) throw new InvalidArgumentError("exists and is not an onepass report; choose another file name or remove it yourself", { file: path, field: flag });
}
