/**
 * Which ONNX Runtime execution providers a session may use: `--device cpu|cuda|auto` (or an explicit provider
 * list) checked against what the installed onnxruntime-node binding can really load, before any model is opened.
 *
 * onnxruntime-node ships the CPU (and WebGPU) providers inside its binding; CUDA and TensorRT are "not bundled":
 * their shared libraries (libonnxruntime_providers_cuda.so + libonnxruntime_providers_shared.so) sit next to the
 * binding only when its install script fetched them (`ONNXRUNTIME_NODE_INSTALL=cuda12`, see
 * node_modules/onnxruntime-node/script/install.js and install-metadata.js). Even with the files present, the
 * provider can fail to load (no CUDA runtime, no GPU), so a provider that is not bundled is confirmed by opening
 * a one-node session with it; the result is remembered for the process.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import "../util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { InvalidArgumentError, OnepassError, type ErrorWhere } from "../errors.js";
import { inMemoryModelBytes, nodeProto, valueInfo } from "../onnx/proto.js";

/** An execution provider was asked for that this onnxruntime-node installation cannot run. */
export class ExecutionProviderError extends OnepassError {
  override readonly code = "EXECUTION_PROVIDER";
  /** A few words on why, for one-line notices ("provider libraries not installed"). */
  readonly reason: string;
  constructor(message: string, where: ErrorWhere, options: { cause?: unknown } | undefined, reason: string) {
    super(message, where, options);
    this.reason = reason;
  }
}

/** What a user asks for: a device name, or ORT provider names in priority order. */
export type DeviceRequest = "cpu" | "cuda" | "auto" | readonly string[];

/** The command that installs the CUDA 12 provider libraries next to the onnxruntime-node binding. */
export const CUDA_INSTALL_HINT = "ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node";

/** Shared libraries the CUDA provider needs beside the binding (install-metadata.js, manifest linux/x64:cuda12). */
const CUDA_LIBRARIES = ["libonnxruntime_providers_cuda.so", "libonnxruntime_providers_shared.so"];

export interface ResolveProvidersOptions {
  /** Where "auto"'s one-line fallback notice goes (default process.stderr). */
  notice?: (line: string) => void;
}

/**
 * The executionProviders list for `request`: "cpu" → ["cpu"]; "cuda" → ["cuda", "cpu"] or an
 * ExecutionProviderError with the install command; "auto" → CUDA when it loads, else ["cpu"] with a notice;
 * a list → itself, each name checked. CPU stays last so ORT can place ops the GPU provider lacks.
 */
export async function resolveExecutionProviders(request: DeviceRequest, options: ResolveProvidersOptions = {}): Promise<string[]> {
  if (request === "cpu") return ["cpu"];
  if (request === "cuda") {
    await assertProviderUsable("cuda");
    return ["cuda", "cpu"];
  }
  if (request === "auto") {
    try {
      await assertProviderUsable("cuda");
      return ["cuda", "cpu"];
    } catch (e) {
      if (!(e instanceof ExecutionProviderError)) throw e;
      const notice = options.notice ?? ((line: string) => process.stderr.write(line + "\n"));
      notice(`onepass: CUDA is not available (${e.reason}); running on CPU`);
      return ["cpu"];
    }
  }
  if (!Array.isArray(request) || request.length === 0 || !request.every((p) => typeof p === "string" && p !== "")) {
    throw new InvalidArgumentError(`device must be cpu, cuda, auto or a non-empty list of provider names, got ${JSON.stringify(request)}`, { field: "device" });
  }
  for (const name of request) await assertProviderUsable(name);
  return [...request];
}

/** Names the binding was built with; `bundled: false` ones need extra shared libraries. */
function supportedBackends(): { name: string; bundled: boolean }[] {
  return ort.listSupportedBackends();
}

/** The folder holding onnxruntime_binding.node (bin/napi-v6/<platform>/<arch>). */
export function ortBindingDir(): string {
  const require = createRequire(import.meta.url);
  const packageRoot = dirname(require.resolve("onnxruntime-node/package.json"));
  return join(packageRoot, "bin", "napi-v6", process.platform, process.arch);
}

/** Providers already confirmed (or refused) in this process. */
const probed = new Map<string, Promise<void>>();

async function assertProviderUsable(name: string): Promise<void> {
  const backend = supportedBackends().find((b) => b.name === name);
  if (backend === undefined) {
    const known = supportedBackends().map((b) => b.name).join(", ");
    throw new ExecutionProviderError(`this onnxruntime-node build has no "${name}" execution provider (it has: ${known})`, { field: "device" }, undefined, "not in this build");
  }
  if (backend.bundled) return;
  if (name === "cuda" || name === "tensorrt") {
    const dir = ortBindingDir();
    const missing = CUDA_LIBRARIES.filter((f) => !existsSync(join(dir, f)));
    if (missing.length > 0) {
      throw new ExecutionProviderError(
        `the ${name} execution provider is not installed: ${missing.join(", ")} missing in ${dir}. ` +
          `Install the CUDA 12 provider with: ${CUDA_INSTALL_HINT}`,
        { file: join(dir, missing[0]), field: "device" },
        undefined,
        "provider libraries not installed",
      );
    }
  }
  let probe = probed.get(name);
  if (probe === undefined) {
    probe = probeSession(name);
    probed.set(name, probe);
  }
  await probe;
}

/** Opens a one-node (Identity) session restricted to `name`: throws when the provider cannot load. */
async function probeSession(name: string): Promise<void> {
  try {
    const session = await ort.InferenceSession.create(identityModel(), { executionProviders: [name] });
    await session.release();
  } catch (e) {
    const hint = name === "cuda" || name === "tensorrt" ? ` (needs the CUDA 12 runtime and a GPU; reinstall with: ${CUDA_INSTALL_HINT})` : "";
    throw new ExecutionProviderError(`the ${name} execution provider failed to load: ${(e as Error).message}${hint}`, { field: "device" }, { cause: e }, "provider failed to load");
  }
}

/** A valid ONNX model y = Identity(x), x: float32 [1]. */
function identityModel(): Uint8Array {
  return inMemoryModelBytes({
    name: "provider-probe",
    nodes: [nodeProto("Identity", ["x"], ["y"])],
    inputs: [valueInfo("x", "float32", [1])], // [1]
    outputs: [valueInfo("y", "float32", [1])], // [1]
  });
}
