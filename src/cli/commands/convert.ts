/** `onepass convert`: GGUF ↔ Hugging Face folder, or any model → onepass's ONNX decoder graph (optionally int4). */
import type { Command } from "../command.js";
import { numberFlag, oneOf, parseFlags, required } from "../args.js";
import { convertModel, type ConvertOptions } from "../../convert/index.js";
import { stageProgress } from "../progress.js";

const usage = `usage: onepass convert --model PATH --to hf|onnx --out DIR [options]

Converts a model (a .gguf file or a Hugging Face folder).

  --model PATH          source model (.gguf file or folder with config.json)
  --to hf               write a Hugging Face folder: config.json, model.safetensors, tokenizer.json,
                        tokenizer_config.json, generation_config.json (GGUF llama q/k rows are un-permuted
                        to the rotate_half convention)
  --to onnx             write onepass's decoder graph: model.onnx, model.onnx.data, onepass.json and the
                        tokenizer files (a self-contained folder: --model accepts it)
  --out DIR             output folder (created if needed)
  --dtype f32|f16|bf16  (--to hf) tensor storage type, default f32
  --quantize int4       (--to onnx) int4 linear weights, MatMulNBits block 32
  --accuracy-level N    (--quantize int4) MatMulNBits accuracy_level 0..4, default 4 (int8 activations)
  --scheme S            (--quantize int4) symmetric (default) or asymmetric
  --int4-head           (--quantize int4) also quantise the LM head
  --no-taps             (--to onnx) leave out the stacked hidden-state output
`;

const OPTIONS = {
  model: { type: "string" },
  to: { type: "string" },
  out: { type: "string" },
  dtype: { type: "string" },
  quantize: { type: "string" },
  "accuracy-level": { type: "string" },
  scheme: { type: "string" },
  "int4-head": { type: "boolean" },
  "no-taps": { type: "boolean" },
} as const;

export const convertCommand: Command = {
  name: "convert",
  summary: "convert GGUF ↔ Hugging Face folder, or build the ONNX decoder (optionally int4)",
  usage,
  async run(argv) {
    const values = parseFlags(argv, OPTIONS, usage);
    const model = required("model", values.model);
    const to = oneOf("to", required("to", values.to), ["hf", "onnx"] as const)!;
    const out = required("out", values.out);
    const dtype = oneOf("dtype", values.dtype, ["f32", "f16", "bf16"] as const);
    const quantize = oneOf("quantize", values.quantize, ["int4"] as const);
    const scheme = oneOf("scheme", values.scheme, ["symmetric", "asymmetric"] as const);
    const accuracyLevel = numberFlag("accuracy-level", values["accuracy-level"], { int: true, min: 0, max: 4 }) as ConvertOptions["accuracyLevel"];
    const result = await convertModel(model, {
      to,
      out,
      dtype,
      quantize,
      accuracyLevel,
      int4Scheme: scheme,
      int4Head: values["int4-head"] === true,
      taps: values["no-taps"] === true ? false : undefined,
      onProgress: stageProgress(),
    });
    process.stdout.write(`wrote ${result.files.length} files to ${result.out}:\n${result.files.map((f) => `  ${f}`).join("\n")}\n`);
    return 0;
  },
};
