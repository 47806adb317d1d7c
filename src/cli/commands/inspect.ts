/** `onepass inspect`: the model's spec and tensor storage types. A thin layer over loadModel/summarizeModel. */
import type { Command } from "../command.js";
import { parseFlags } from "../args.js";
import { defaultModelPath, loadModel, summarizeModel, type ModelSummary } from "../../model/load.js";

const USAGE = `usage: onepass inspect [--model FILE] [--json]

Prints a model's architecture (layers, width, heads, head size, FFN, vocabulary, context, RoPE, tied
embeddings, q/k/v bias, q/k norm), its fingerprint, and how many tensors/parameters each storage type holds.

options:
  --model PATH   .gguf file, Hugging Face folder, ONNX export folder, or "convert --to onnx" folder
                 (default: the built-in stories260K)
  --json         machine-readable output
  -h, --help     this text
`;

export const inspectCommand: Command = {
  name: "inspect",
  summary: "show a model's architecture and tensor types",
  usage: USAGE,
  async run(argv: string[]): Promise<number> {
    const values = parseFlags(argv, { model: { type: "string" }, json: { type: "boolean" } }, USAGE);
    const model = await loadModel(values.model ?? defaultModelPath());
    try {
      const summary = summarizeModel(model);
      process.stdout.write(values.json ? JSON.stringify(summary, null, 2) + "\n" : formatSummary(summary));
    } finally {
      model.weights.close();
    }
    return 0;
  },
};

export function formatSummary(s: ModelSummary): string {
  const p = s.spec;
  const rope = `theta ${p.ropeTheta}, ${p.ropeStyle}, ${p.ropeDim} of ${p.headDim} dims rotated` +
    (p.ropeScaling ? `, ${p.ropeScaling.type} scaling ×${p.ropeScaling.factor} (original context ${p.ropeScaling.originalContextLength})` : "");
  const rows: [string, string][] = [
    ["file", s.path],
    ["format", s.format],
    ["fingerprint", s.fingerprint],
    ["architecture", p.architecture + (p.name ? ` (${p.name})` : "")],
    ["blocks", String(p.blocks)],
    ["width", String(p.dim)],
    ["heads / kv heads", `${p.heads} / ${p.kvHeads}` + (p.kvHeads < p.heads ? ` (GQA ${p.heads / p.kvHeads}×)` : "")],
    ["head dim", String(p.headDim)],
    ["ffn", String(p.ffnDim)],
    ["vocab", String(p.vocabSize)],
    ["context", String(p.contextLength)],
    ["rms norm eps", String(Number(p.rmsNormEps.toPrecision(6)))],
    ["rope", rope],
    ["tied embeddings", p.tiedEmbeddings ? "yes" : "no"],
    ["q/k/v bias", p.qkvBias ? "yes" : "no"],
    ["q/k norm", p.qkNorm ? "yes" : "no"],
    ["bos / eos", `${p.bosTokenId ?? "-"} / ${p.eosTokenIds.join(", ") || "-"}`],
    ["chat template", s.hasChatTemplate ? "yes" : "no"],
    ["tensors", `${s.tensors} (${s.parameters.toLocaleString("en-US")} parameters)`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
  lines.push("", "dtype   tensors  parameters");
  for (const [dtype, count] of Object.entries(s.dtypes).sort((a, b) => b[1] - a[1])) {
    lines.push(`${dtype.padEnd(6)}  ${String(count).padStart(7)}  ${s.dtypeParameters[dtype]!.toLocaleString("en-US").padStart(10)}`);
  }
  return lines.join("\n") + "\n";
}
