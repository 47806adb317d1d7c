/** Content fingerprints of model files: "sha256:<hex>", streamed in chunks and cached by path+size+mtime. */
import { createHash } from "node:crypto";
import { createReadStream, statSync } from "node:fs";
import { resolve } from "node:path";
import { ModelFormatError } from "../errors.js";

const cache = new Map<string, { size: number; mtimeMs: number; fingerprint: string }>();

/** sha256 of the file's content as "sha256:<hex>". Cached in memory while the file's size and mtime are unchanged. */
export async function fingerprintFile(path: string): Promise<string> {
  const abs = resolve(path);
  let st;
  try {
    st = statSync(abs);
  } catch (err) {
    throw new ModelFormatError(`cannot stat file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { file: path }, { cause: err });
  }
  const hit = cache.get(abs);
  if (hit !== undefined && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit.fingerprint;
  const hash = createHash("sha256");
  try {
    for await (const chunk of createReadStream(abs, { highWaterMark: 4 << 20 })) hash.update(chunk as Buffer);
  } catch (err) {
    throw new ModelFormatError(`cannot read file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { file: path }, { cause: err });
  }
  const fingerprint = `sha256:${hash.digest("hex")}`;
  cache.set(abs, { size: st.size, mtimeMs: st.mtimeMs, fingerprint });
  return fingerprint;
}
