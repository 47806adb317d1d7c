/** `onepass convert`: GGUF ↔ Hugging Face folder, or any model → onepass's ONNX decoder graph (optionally int4). */
import { parseArgs } from "node:util";
import type { Command } from "../command.js";
import { InvalidArgumentError } from "../../errors.js";
import { convertModel, type ConvertOptions } from "../../model/hf/convert.js";

const usage = `usage: onepass convert --model PATH --to hf|onnx --out DIR [options]

Converts a model (a .gguf file or a Hugging Face folder).

  --model PATH          source model (.gguf file or folder with config.json)
  --to hf               write a Hugging Face folder: config.json, model.safetensors, tokenizer.json,
                        tokenizer_config.json, generation_config.json (GGUF llama q/k rows are un-permuted
                        to the rotate_half convention)
  --to onnx             write onepass's decoder graph: model.onnx, model.onnx.data, onepass.json
  --out DIR             output folder (created if needed)
  --dtype f32|f16|bf16  (--to hf) tensor storage type, default f32
  --quantize int4       (--to onnx) int4 linear weights, MatMulNBits block 32
  --accuracy-level N    (--quantize int4) MatMulNBits accuracy_level 0..4, default 4 (int8 activations)
  --scheme S            (--quantize int4) symmetric (default) or asymmetric
  --int4-head           (--quantize int4) also quantise the LM head
  --no-taps             (--to onnx) leave out the stacked hidden-state output
`;

export const convertCommand: Command = {
  name: "convert",
  summary: "convert GGUF ↔ Hugging Face folder, or build the ONNX decoder (optionally int4)",
  usage,
  async run(argv) {
    let values;
    try {
      ({ values } = parseArgs({
        args: argv,
        options: {
          model: { type: "string" },
          to: { type: "string" },
          out: { type: "string" },
          dtype: { type: "string" },
          quantize: { type: "string" },
          "accuracy-level": { type: "string" },
          scheme: { type: "string" },
          "int4-head": { type: "boolean" },
          "no-taps": { type: "boolean" },
        },
        strict: true,
        allowPositionals: false,
      }));
    } catch (err) {
      throw new InvalidArgumentError(`${(err as Error).message}\n\n${usage}`);
    }
    if (values.model === undefined) throw new InvalidArgumentError("--model is required", { field: "--model" });
    if (values.to !== "hf" && values.to !== "onnx") throw new InvalidArgumentError(`--to must be hf or onnx, got ${values.to ?? "nothing"}`, { field: "--to" });
    if (values.out === undefined) throw new InvalidArgumentError("--out is required", { field: "--out" });
    if (values.dtype !== undefined && !["f32", "f16", "bf16"].includes(values.dtype)) {
      throw new InvalidArgumentError(`--dtype must be f32, f16 or bf16, got ${values.dtype}`, { field: "--dtype" });
    }
    if (values.quantize !== undefined && values.quantize !== "int4") throw new InvalidArgumentError(`--quantize must be int4, got ${values.quantize}`, { field: "--quantize" });
    if (values.scheme !== undefined && values.scheme !== "symmetric" && values.scheme !== "asymmetric") {
      throw new InvalidArgumentError(`--scheme must be symmetric or asymmetric, got ${values.scheme}`, { field: "--scheme" });
    }
    let accuracyLevel: ConvertOptions["accuracyLevel"];
    if (values["accuracy-level"] !== undefined) {
      const n = Number(values["accuracy-level"]);
      if (![0, 1, 2, 3, 4].includes(n)) throw new InvalidArgumentError(`--accuracy-level must be 0..4, got ${values["accuracy-level"]}`, { field: "--accuracy-level" });
      accuracyLevel = n as ConvertOptions["accuracyLevel"];
    }
    const result = await convertModel(values.model, {
      to: values.to,
      out: values.out,
      dtype: values.dtype as ConvertOptions["dtype"],
      quantize: values.quantize as ConvertOptions["quantize"],
      accuracyLevel,
      int4Scheme: values.scheme as ConvertOptions["int4Scheme"],
      int4Head: values["int4-head"] === true,
      taps: values["no-taps"] === true ? false : undefined,
    });
    process.stdout.write(`wrote ${result.files.length} files to ${result.out}:\n${result.files.map((f) => `  ${f}`).join("\n")}\n`);
    return 0;
  },
};
