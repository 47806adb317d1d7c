import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { OnepassError } from "../src/errors.js";
import { loadGguf, randomModelContents, readGgufHeader, writeGguf } from "../src/model/gguf/index.js";
import { mulberry32, tempDir } from "./helpers.js";

const CASES = 240; // FUZZ_CASES / FUZZ_SEED env vars run a longer campaign by hand
const PER_LOAD_MS = 2000;
const MAX_GROWTH_BYTES = 256 * 2 ** 20;


const N = Number(process.env.FUZZ_CASES ?? CASES);
test(`fuzz: ${N} mutated GGUF files load or fail with an OnepassError, quickly and in bounded memory`, { timeout: 60_000 }, async () => {
  const dir = tempDir("fuzz");
  try {
    const basePath = join(dir, "base.gguf");
    const contents = randomModelContents({ architecture: "qwen2", blocks: 2, dim: 64, heads: 4, kvHeads: 2, ffnDim: 64, vocabSize: 300, dtype: "f32", seed: 9 });
    // Mix storage types so every dequantiser sees corrupted input.
    const dtypes = ["f16", "q8_0", "q4_0", "bf16"] as const;
    contents.tensors.filter((t) => t.shape.length === 2).forEach((t, i) => { t.dtype = dtypes[i % dtypes.length]!; });
    writeGguf(basePath, contents);
    const base = readFileSync(basePath);
    const header = readGgufHeader(basePath);
    const metaEnd = header.tensors[0]!.entryOffset; // metadata region: [24, metaEnd); tensor table: [metaEnd, dataStart)
    const rand = mulberry32(Number(process.env.FUZZ_SEED ?? 12345));
    const pick = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo));

    const baselineMem = process.memoryUsage();
    const outcomes = { loaded: 0, rejected: 0 };
    for (let c = 0; c < N; c++) {
      let bytes = Buffer.from(base);
      const kind = c % 5;
      let what: string;
      if (kind === 0) {
        const at = pick(0, 24); // magic, version, counts
        bytes[at] = pick(0, 256);
        what = `header byte ${at}`;
      } else if (kind === 1) {
        const flips = pick(1, 6);
        const ats = Array.from({ length: flips }, () => pick(24, metaEnd));
        for (const at of ats) bytes[at] ^= 1 << pick(0, 8);
        what = `metadata bits at ${ats.join(",")}`;
      } else if (kind === 2) {
        const ats = Array.from({ length: pick(1, 4) }, () => pick(metaEnd, header.dataStart));
        for (const at of ats) bytes[at] = pick(0, 256);
        what = `tensor table bytes at ${ats.join(",")}`;
      } else if (kind === 3) {
        const at = pick(24, header.dataStart - 8); // a plausible length/count field set to a huge value
        bytes.writeBigUInt64LE(rand() < 0.5 ? 0xffffffffffffffffn : BigInt(pick(1, 2 ** 30)) << 16n, at);
        what = `u64 at ${at}`;
      } else {
        const cut = rand() < 0.7 ? pick(0, header.dataStart + 64) : pick(0, base.length);
        bytes = bytes.subarray(0, cut);
        what = `truncated at ${cut}`;
      }
      const path = join(dir, `case-${c}.gguf`);
      writeFileSync(path, bytes);
      const t0 = performance.now();
      try {
        const m = await loadGguf(path);
        for (const t of m.weights.list()) m.weights.readF32(t.name);
        m.weights.close();
        outcomes.loaded++;
      } catch (err) {
        if (!(err instanceof OnepassError)) {
          assert.fail(`case ${c} (${what}): expected an OnepassError, got ${err instanceof Error ? err.stack : String(err)}`);
        }
        assert.ok(err.message.includes(path), `case ${c} (${what}): message does not name the file: ${err.message}`);
        outcomes.rejected++;
      }
      const ms = performance.now() - t0;
      assert.ok(ms < PER_LOAD_MS, `case ${c} (${what}) took ${ms.toFixed(0)} ms`);
      rmSync(path);
      const mem = process.memoryUsage();
      const growth = mem.heapUsed + mem.arrayBuffers - (baselineMem.heapUsed + baselineMem.arrayBuffers);
      assert.ok(growth < MAX_GROWTH_BYTES, `case ${c} (${what}): memory grew by ${(growth / 2 ** 20).toFixed(0)} MiB`);
    }
    // Both paths must actually be exercised.
    assert.ok(outcomes.rejected > N / 4, JSON.stringify(outcomes));
    assert.ok(outcomes.loaded > 0, JSON.stringify(outcomes));
    console.log(`fuzz outcomes: ${JSON.stringify(outcomes)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
