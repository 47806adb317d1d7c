/** `onepass classify`: one forward pass through the engine, the probe's label, probabilities and layer weights. */
import type { Command } from "../command.js";
import { Engine } from "../../engine/engine.js";
import { loadProbe } from "../../probe/artifact.js";
import { engineFlags, parseFlags, required } from "../args.js";
import { stageProgress } from "../progress.js";
import { generateWithProbes } from "../../probe/live.js";

const usage = `usage: onepass classify --probe P --text TEXT [--model M] [--json]

Runs the model once over TEXT (tokenised as the probe's training data was) and prints the probe's label,
class probabilities and, for scoring probes, the layer-gate weights.

  --model M             .gguf file, Hugging Face folder or ONNX folder (default: the built-in stories260K); must be the
                        model the probe was trained on
  --probe P             probe folder (from onepass train)
  --text TEXT           the prompt
  --json                JSON output
  --threads N           ONNX Runtime threads (default: all cores)
  --device D            cpu (default) | cuda | auto (CUDA when installed, else CPU with a notice)
`;

export const classifyCommand: Command = {
  name: "classify",
  summary: "classify a prompt with a probe (one forward pass)",
  usage,
  async run(argv) {
    const v = parseFlags(argv, { model: { type: "string" }, probe: { type: "string" }, text: { type: "string" }, json: { type: "boolean" }, threads: { type: "string" }, device: { type: "string" } }, usage);
    const probeDir = required("probe", v.probe, usage);
    const text = required("text", v.text, usage);
    const engine = await Engine.load(v.model, { taps: true, onProgress: stageProgress(), ...engineFlags(v) });
    try {
      const loaded = loadProbe(probeDir, { expectFingerprint: engine.fingerprint });
      // the same path as `generate --probe`: one prefill, the probe on its hidden states, no decode step
      // (tokenised and cut as the probe's training prompts were)
      const chat = loaded.meta.tokenization?.template === "chat";
      let ids = engine.promptTokens({ prompt: text, chat });
      const max = loaded.meta.tokenization?.maxTokens ?? null;
      if (max !== null && ids.length > max) ids = ids.slice(0, max); // as the training prompts were cut
      const { generation, classifications } = generateWithProbes(engine, { prompt: ids, maxTokens: 0 }, [loaded]);
      const r = await generation.result;
      const [c] = await classifications;
      const result = {
        label: c.label,
        probabilities: Object.fromEntries(Object.entries(c.probabilities).map(([n, p]) => [n, +p.toFixed(6)])),
        ...(c.threshold !== undefined ? { threshold: c.threshold } : {}),
        ...(c.layerWeights !== undefined ? { layerWeights: c.layerWeights.map((w) => +w.toFixed(4)) } : {}),
        tokens: c.tokens,
        forwardMs: +r.timings.prefillMs.toFixed(2),
        probeMs: +c.probeMs.toFixed(2),
        ...(c.warnings.length > 0 ? { warnings: c.warnings } : {}),
      };
      for (const w of c.warnings) process.stderr.write(`warning: ${w}\n`);
      if (v.json === true) process.stdout.write(JSON.stringify(result, null, 2) + "\n");
      else {
        process.stdout.write(`${result.label}\n`);
        for (const [n, p] of Object.entries(result.probabilities)) process.stdout.write(`  ${n}: ${p.toFixed(4)}\n`);
        if (result.layerWeights !== undefined) process.stdout.write(`layer weights (0..${result.layerWeights.length - 1}): ${result.layerWeights.map((w) => w.toFixed(3)).join(" ")}\n`);
        process.stderr.write(`${result.tokens} tokens, forward ${result.forwardMs} ms, probe ${result.probeMs} ms\n`);
      }
      return 0;
    } finally {
      await engine.dispose();
    }
  },
};
