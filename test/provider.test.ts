// Execution providers: "cpu" runs, "cuda" without the CUDA provider libraries (this machine: onnxruntime-node
// installed with its default, CPU-only binaries) is a typed error carrying the install command that
// onnxruntime-node 1.30's script/install.js supports, and "auto" falls back to CPU with one notice line.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import "../src/util/ort-env.js"; // before onnxruntime-node: telemetry off unless opted in
import * as ort from "onnxruntime-node";
import { Engine } from "../src/engine/engine.js";
import { CUDA_INSTALL_HINT, ExecutionProviderError, ortBindingDir, resolveExecutionProviders } from "../src/engine/providers.js";
import { extractCommand } from "../src/cli/commands/extract.js";
import { InvalidArgumentError } from "../src/errors.js";

const cudaInstalled = existsSync(join(ortBindingDir(), "libonnxruntime_providers_cuda.so"));

test("the binding folder is where onnxruntime-node keeps its native binding, and its install script takes cuda12", () => {
  assert.ok(existsSync(join(ortBindingDir(), "onnxruntime_binding.node")), ortBindingDir());
  // the hint must be what the installed package's own installer accepts
  const pkgDir = join(ortBindingDir(), "..", "..", "..", "..");
  const metadata = readFileSync(join(pkgDir, "script", "install-metadata.js"), "utf8");
  // the hint is "<env var>=<value> npm rebuild <package>": each part must be what the installed package uses
  const hint = /^([A-Z_]+)=(\w+) npm rebuild (\S+)$/.exec(CUDA_INSTALL_HINT);
  assert.ok(hint, CUDA_INSTALL_HINT);
  const [, envVar, value, pkg] = hint;
  assert.equal(pkg, JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")).name);
  assert.ok(readFileSync(join(pkgDir, "script", "install.js"), "utf8").includes(envVar), `install.js reads ${envVar}`);
  assert.ok(metadata.includes(`'linux/x64:${value}'`), `install-metadata.js has a linux/x64:${value} entry`);
  assert.match(metadata, /libonnxruntime_providers_cuda\.so/);
  assert.ok(ort.listSupportedBackends().some((b) => b.name === "cuda" && !b.bundled));
});

test('"cpu" resolves to the CPU provider and an engine loaded with it generates', async () => {
  assert.deepEqual(await resolveExecutionProviders("cpu"), ["cpu"]);
  const engine = await Engine.load(undefined, { device: "cpu", threads: 2 });
  try {
    const { tokens } = await engine.generate({ prompt: "Once upon a time", maxTokens: 8, temperature: 0 }).result;
    assert.ok(tokens.length > 0);
  } finally {
    await engine.dispose();
  }
});

test('"cuda" without the CUDA provider installed: ExecutionProviderError with the install command', { skip: cudaInstalled ? "CUDA provider installed here" : false }, async () => {
  const check = (e: unknown) =>
    e instanceof ExecutionProviderError && e.code === "EXECUTION_PROVIDER" && e.field === "device" && e.message.includes(CUDA_INSTALL_HINT) && e.message.includes("libonnxruntime_providers_cuda.so");
  await assert.rejects(() => resolveExecutionProviders("cuda"), check);
  await assert.rejects(() => Engine.load(undefined, { device: "cuda" }), check);
  await assert.rejects(() => resolveExecutionProviders(["cuda", "cpu"]), check);
});

test('"auto" falls back to CPU with a one-line notice when CUDA is missing', { skip: cudaInstalled ? "CUDA provider installed here" : false }, async () => {
  const lines: string[] = [];
  assert.deepEqual(await resolveExecutionProviders("auto", { notice: (l) => lines.push(l) }), ["cpu"]);
  assert.equal(lines.length, 1);
  assert.match(lines[0], /CUDA is not available .*running on CPU/);
  assert.ok(!lines[0].includes("\n"));
});

test("unknown providers and bad device values are typed errors", async () => {
  await assert.rejects(() => resolveExecutionProviders(["nosuchprovider"]), (e: unknown) => e instanceof ExecutionProviderError && e.message.includes("nosuchprovider"));
  await assert.rejects(() => resolveExecutionProviders([]), InvalidArgumentError);
  await assert.rejects(() => resolveExecutionProviders("gpu" as never), InvalidArgumentError);
  await assert.rejects(() => extractCommand.run(["--data", "x.csv", "--out", "/tmp/none", "--device", "gpu"]), (e: unknown) => e instanceof InvalidArgumentError && e.field === "--device");
});
