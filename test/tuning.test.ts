// Per-machine run settings: CPU features parsed from /proc/cpuinfo text (x86 with and without int8 dot products,
// SMT siblings, Arm), and the calibration that measures both MatMulNBits levels once and is cached beside the graph.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { loadModel } from "../src/model/load.js";
import { writeRandomModel } from "../src/model/gguf/writer.js";
import { createDecoderSession, resolveRunSettings } from "../src/engine/session.js";
import { machineProfile, settingsFromFeatures } from "../src/engine/tuning.js";
import { argmax, tempDir } from "./helpers.js";

let dir: string;
before(() => {
  dir = tempDir("tuning");
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** /proc/cpuinfo text: `cpus` processors as (physical id, core id) pairs sharing one flags line. */
function cpuinfo(cores: [number, number][], flags: string, model = "Test CPU"): string {
  return cores.map(([p, c], i) => `processor\t: ${i}\nmodel name\t: ${model}\nphysical id\t: ${p}\ncore id\t\t: ${c}\nflags\t\t: ${flags}\n`).join("\n");
}

test("CPU features: threads = physical cores, level 4 with int8 dot products, level 0 without", () => {
  // 2 cores × 2 SMT siblings, AVX-512 VNNI
  const smt = machineProfile(cpuinfo([[0, 0], [0, 1], [0, 0], [0, 1]], "fpu sse2 avx2 avx512f avx512_vnni"));
  assert.equal(smt.logicalCpus, 4);
  assert.equal(smt.physicalCores, 2);
  assert.equal(smt.model, "Test CPU");
  assert.deepEqual(settingsFromFeatures(smt), { accuracyLevel: 4, threads: 2, source: "features" });
  // an old x86 without AVX2: MatMulNBits' int8 kernels have nothing to run on
  const old = machineProfile(cpuinfo([[0, 0], [0, 1], [1, 0], [1, 1]], "fpu sse2 sse4_2 avx"));
  assert.deepEqual(settingsFromFeatures(old), { accuracyLevel: 0, threads: 4, source: "features" });
  // Arm: "Features" line, no core ids (each processor counts as a core)
  const arm = machineProfile("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\n\nprocessor\t: 1\nFeatures\t: fp asimd asimddp i8mm\n");
  assert.equal(arm.physicalCores, 2);
  assert.equal(settingsFromFeatures(arm).accuracyLevel, 4);
  // this machine
  const here = machineProfile();
  assert.ok(here.physicalCores >= 1 && here.physicalCores <= here.logicalCpus);
});

test("calibration measures levels 4 and 0 once, is cached beside the graph and reused", async () => {
  const path = join(dir, "q4.gguf");
  writeRandomModel(path, { architecture: "llama", blocks: 2, dim: 128, heads: 4, kvHeads: 2, ffnDim: 256, vocabSize: 320, dtype: "q4_0", seed: 41, weightStd: 0.15, contextLength: 512 });
  const model = await loadModel(path);
  const cacheDir = join(dir, "graphs");
  try {
    const auto = await resolveRunSettings(model, { cacheDir, threads: 2 });
    assert.equal(auto.source, "features", "without a calibration, the CPU's features decide");
    const session = await createDecoderSession(model, { cacheDir, threads: 2, tune: "calibrate" });
    const files = readdirSync(cacheDir).map((d) => join(cacheDir, d, "calibration.json")).filter((f) => existsSync(f));
    assert.equal(files.length, 1, "one calibration file, beside the level-4 graph");
    const cal = JSON.parse(readFileSync(files[0], "utf8"));
    const [entry] = Object.values(cal.machines) as { accuracyLevel: number; measured: Record<string, { prefillMsPerToken: number; decodeMsPerToken: number; workloadMs: number }> }[];
    for (const level of ["level4", "level0"]) {
      const m = entry.measured[level];
      assert.ok(m.prefillMsPerToken > 0 && m.decodeMsPerToken > 0 && m.workloadMs > 0, `${level} measured`);
    }
    const faster = entry.measured.level0.workloadMs < entry.measured.level4.workloadMs ? 0 : 4;
    assert.equal(entry.accuracyLevel, faster, "the faster level for the reference workload is chosen");
    // the session runs at the chosen level and works
    const pass = await session.forward([1, 5, 9]);
    assert.ok(argmax(pass.logits) >= 0);
    await session.dispose();
    // later loads use the cached result without measuring again
    const mtime = statSync(files[0]).mtimeMs;
    const again = await resolveRunSettings(model, { cacheDir, threads: 2 });
    assert.equal(again.source, "calibration");
    assert.equal(again.accuracyLevel, faster);
    const s2 = await createDecoderSession(model, { cacheDir, threads: 2, tune: "calibrate" });
    await s2.dispose();
    assert.equal(statSync(files[0]).mtimeMs, mtime, "no second calibration");
    // another thread count is another machine setting: not covered by this entry
    assert.equal((await resolveRunSettings(model, { cacheDir, threads: 1 })).source, "features");
    await assert.rejects(() => resolveRunSettings(model, { cacheDir, tune: "fast" as never }), /tune must be/);
  } finally {
    model.weights.close();
  }
});
