/**
 * Per-machine run settings: which MatMulNBits accuracy level (int8 or float activations) and how many ORT
 * threads, chosen from this CPU rather than from one machine's measurement.
 *
 * - From CPU features (the default): threads = physical cores (SMT siblings share the FMA/VNNI units that the
 *   matmuls saturate); accuracy level 4 (int8 activations) where the CPU has int8 dot products (x86 AVX2 /
 *   AVX-512 VNNI / AMX, Arm dotprod / i8mm), which MLAS uses for both the one-token GEMV and the prefill GEMM
 *   (measured here, AVX-512 VNNI: level 4 faster than 0 for prefill too, and ≈2× at one token), else level 0.
 * - From a short calibration (`tune: "calibrate"`): the same graph timed at levels 4 and 0 (a 256-token prefill and
 *   8 decode steps each); the level with less time for a 512-token prompt + 128 generated tokens wins. The result
 *   is cached beside the graph (calibration.json), keyed by CPU model, features and thread count, so later loads
 *   on this machine use it without measuring again.
 *
 * One level serves prefill and decode, so one ORT session (one copy of the weights) does all the work.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism, cpus } from "node:os";
import { join } from "node:path";
import "../util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { GraphError } from "../errors.js";
import { withMatMulNBitsAccuracy } from "../onnx/proto.js";
import { writeFileAtomic } from "../util/atomic.js";

/** What the settings are chosen from. */
export interface MachineProfile {
  /** CPU model name. */
  model: string;
  arch: string;
  /** CPU feature flags (/proc/cpuinfo "flags" or "Features"); empty where unknown. */
  flags: string[];
  /** Physical cores (logical CPUs without SMT siblings). */
  physicalCores: number;
  logicalCpus: number;
}

export type AccuracyLevel = 0 | 4;

export interface RunSettings {
  accuracyLevel: AccuracyLevel;
  threads: number;
  /** "features": from the CPU's flags; "calibration": measured on this machine (cached beside the graph). */
  source: "features" | "calibration";
  /** With source "calibration": ms for the reference workload at each level. */
  measured?: Record<string, { prefillMsPerToken: number; decodeMsPerToken: number; workloadMs: number }>;
}

/** This machine's CPU (Linux: /proc/cpuinfo; elsewhere: os.cpus(), without flags). */
export function machineProfile(cpuinfo?: string): MachineProfile {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      text = "";
    }
  }
  const field = (name: string) => text!.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, "m"))?.[1].trim();
  const flags = (field("flags") ?? field("Features") ?? "").split(/\s+/).filter((f) => f.length > 0);
  // physical cores: distinct (physical id, core id) pairs; processors without them count one each
  const cores = new Set<string>();
  let processors = 0;
  for (const block of text.split(/\n\s*\n/)) {
    if (!/^processor\s*:/m.test(block)) continue;
    processors++;
    const phys = block.match(/^physical id\s*:\s*(\d+)/m)?.[1];
    const core = block.match(/^core id\s*:\s*(\d+)/m)?.[1];
    cores.add(phys !== undefined && core !== undefined ? `${phys}:${core}` : `cpu${processors}`);
  }
  // this process may be limited to fewer CPUs than the machine has (affinity, containers)
  const logicalCpus = cpuinfo === undefined ? availableParallelism() : Math.max(1, processors);
  const physicalCores = Math.max(1, Math.min(logicalCpus, cores.size || logicalCpus));
  return { model: field("model name") ?? cpus()[0]?.model ?? "unknown", arch: process.arch, flags, physicalCores, logicalCpus };
}

/** Whether the CPU has int8 dot-product instructions that MatMulNBits' level-4 kernels use. */
export function hasInt8Dot(p: MachineProfile): boolean {
  const f = new Set(p.flags);
  return ["avx512_vnni", "avx_vnni", "amx_int8", "avx2", "asimddp", "i8mm"].some((x) => f.has(x));
}

/** Settings from the CPU's features alone. */
export function settingsFromFeatures(p: MachineProfile = machineProfile()): RunSettings {
  return { accuracyLevel: hasInt8Dot(p) ? 4 : 0, threads: p.physicalCores, source: "features" };
}

/** The key of this machine + thread count in calibration.json. */
export function machineKey(p: MachineProfile, threads: number): string {
  return createHash("sha256").update(JSON.stringify([p.model, p.arch, [...p.flags].sort(), threads])).digest("hex").slice(0, 16);
}

const CALIBRATION_FILE = "calibration.json";

interface CalibrationFile {
  machines: Record<string, RunSettings & { cpu: string; at: string }>;
}

function readCalibrationFile(dir: string): CalibrationFile {
  const path = join(dir, CALIBRATION_FILE);
  if (!existsSync(path)) return { machines: {} };
  try {
    const parsed = JSON.parse(readFileSync(path, "utf8")) as CalibrationFile;
    return parsed !== null && typeof parsed.machines === "object" ? parsed : { machines: {} };
  } catch {
    return { machines: {} }; // a damaged cache entry is measured again, not an error
  }
}

/** The cached calibration for this machine beside `graphDir`, if there is one. */
export function cachedCalibration(graphDir: string, threads: number, p: MachineProfile = machineProfile()): RunSettings | undefined {
  const hit = readCalibrationFile(graphDir).machines[machineKey(p, threads)];
  if (hit === undefined || (hit.accuracyLevel !== 0 && hit.accuracyLevel !== 4)) return undefined;
  return { accuracyLevel: hit.accuracyLevel, threads, source: "calibration", measured: hit.measured };
}

/** Reference workload the levels are compared on: a 512-token prompt and 128 generated tokens. */
const WORKLOAD = { prompt: 512, decode: 128 };

/**
 * Times the decoder graph at `modelPath` (built with MatMulNBits level 4) at levels 4 and 0, picks the faster
 * for the reference workload, and records it beside the graph. Each level's session exists only while it is
 * measured. `vocabSize` bounds the random-free token ids used (a fixed ramp).
 */
export async function calibrate(
  modelPath: string,
  graphDir: string,
  spec: { vocabSize: number; contextLength: number },
  threads: number,
  makeSession: (source: string | Uint8Array) => Promise<ort.InferenceSession>,
  feedsFor: (session: ort.InferenceSession, tokens: number[], past: number) => { feeds: Record<string, ort.Tensor>; fetches: string[] },
  p: MachineProfile = machineProfile(),
): Promise<RunSettings> {
  const T = Math.max(1, Math.min(256, spec.contextLength - 16));
  const tokens = Array.from({ length: T }, (_, i) => (i * 131 + 7) % spec.vocabSize);
  const measured: NonNullable<RunSettings["measured"]> = {};
  for (const level of [4, 0] as const) {
    const source = level === 4 ? modelPath : withMatMulNBitsAccuracy(modelPath, level) ?? modelPath;
    const session = await makeSession(source);
    try {
      const time = async (toks: number[], past: number): Promise<number> => {
        const { feeds, fetches } = feedsFor(session, toks, past);
        const t0 = performance.now();
        await session.run(feeds, fetches);
        return performance.now() - t0;
      };
      await time(tokens.slice(0, 8), 0); // warm-up (first-run allocations)
      const prefill = Math.min(await time(tokens, 0), await time(tokens, 0)) / T;
      const steps: number[] = [];
      for (let i = 0; i < 8; i++) steps.push(await time([tokens[i]], Math.min(T, spec.contextLength - 1)));
      const decode = steps.sort((a, b) => a - b)[Math.floor(steps.length / 2)];
      measured[`level${level}`] = { prefillMsPerToken: prefill, decodeMsPerToken: decode, workloadMs: prefill * WORKLOAD.prompt + decode * WORKLOAD.decode };
    } catch (e) {
      throw new GraphError(`calibration run failed: ${(e as Error).message}`, { file: modelPath }, { cause: e });
    } finally {
      await session.release();
    }
  }
  const accuracyLevel: AccuracyLevel = measured.level0.workloadMs < measured.level4.workloadMs ? 0 : 4;
  const settings: RunSettings = { accuracyLevel, threads, source: "calibration", measured };
  const file = readCalibrationFile(graphDir);
  file.machines[machineKey(p, threads)] = { ...settings, cpu: p.model, at: new Date().toISOString() };
  writeFileAtomic(join(graphDir, CALIBRATION_FILE), JSON.stringify(file, null, 2));
  return settings;
}
