/** `onepass classify`: one forward pass through the engine, the probe's label, probabilities and layer weights. */
import type { Command } from "../command.js";
import { InvalidArgumentError } from "../../errors.js";
import { Engine } from "../../engine/engine.js";
import { loadProbe } from "../../probe/artifact.js";
import { parseFlags, required } from "../../probe/cli-args.js";

const usage = `usage: onepass classify --probe P --text TEXT [--model M] [--json]

Runs the model once over TEXT (tokenised as the probe's training data was) and prints the probe's label,
class probabilities and, for scoring probes, the layer-gate weights.

  --model M             .gguf file or Hugging Face folder (default: the built-in stories260K); must be the
                        model the probe was trained on
  --probe P             probe folder (from onepass train)
  --text TEXT           the prompt
  --json                JSON output
`;

export const classifyCommand: Command = {
  name: "classify",
  summary: "classify a prompt with a probe (one forward pass)",
  usage,
  async run(argv) {
    const v = parseFlags(argv, { model: { type: "string" }, probe: { type: "string" }, text: { type: "string" }, json: { type: "boolean" }, threads: { type: "string" } }, usage);
    const probeDir = required("probe", v.s("probe"), usage);
    const text = required("text", v.s("text"), usage);
    const engine = await Engine.load(v.s("model"), { taps: true });
    try {
      const { probe, meta } = loadProbe(probeDir, { expectFingerprint: engine.fingerprint });
      let ids = engine.promptTokens({ prompt: text, chat: meta.tokenization?.template === "chat" });
      const max = meta.tokenization?.maxTokens;
      if (max !== undefined && max !== null && ids.length > max) ids = ids.slice(0, max);
      if (ids.length === 0) throw new InvalidArgumentError("the text encodes to no tokens", { field: "--text" });
      const t0 = performance.now();
      const pass = await engine.forward(ids, { hidden: true });
      const t1 = performance.now();
      const probs = await probe.predict(pass.hidden!);
      const weights = await probe.layerWeights(pass.hidden!);
      const t2 = performance.now();
      let label: number;
      if (probs.length === 2 && meta.threshold !== undefined) label = probs[1] >= meta.threshold ? 1 : 0;
      else label = probs.indexOf(Math.max(...probs));
      const result = {
        label: meta.labelNames[label],
        probabilities: Object.fromEntries(meta.labelNames.map((n, i) => [n, +probs[i].toFixed(6)])),
        ...(meta.threshold !== undefined ? { threshold: meta.threshold } : {}),
        ...(weights !== undefined ? { layerWeights: Array.from(weights, (w) => +w.toFixed(4)) } : {}),
        tokens: ids.length,
        forwardMs: +(t1 - t0).toFixed(2),
        probeMs: +(t2 - t1).toFixed(2),
      };
      if (v.b("json")) process.stdout.write(JSON.stringify(result, null, 2) + "\n");
      else {
        process.stdout.write(`${result.label}\n`);
        for (const [n, p] of Object.entries(result.probabilities)) process.stdout.write(`  ${n}: ${p.toFixed(4)}\n`);
        if (result.layerWeights !== undefined) process.stdout.write(`layer weights (0..${result.layerWeights.length - 1}): ${result.layerWeights.map((w) => w.toFixed(3)).join(" ")}\n`);
        process.stderr.write(`${ids.length} tokens, forward ${result.forwardMs} ms, probe ${result.probeMs} ms\n`);
      }
      return 0;
    } finally {
      await engine.dispose();
    }
  },
};
