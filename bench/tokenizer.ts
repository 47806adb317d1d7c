/**
 * Encode speed of the tokenizers on ~100 KB of English text (SST-2 sentences), side by side with llama.cpp
 * (node-llama-cpp) on the same vocabulary. Run: npx tsc -p . && node dist/bench/tokenizer.js
 */
import { readFileSync } from "node:fs";
import { getLlama } from "node-llama-cpp";
import { tokenizerFromHfFolder, type Tokenizer } from "../src/tokenizer/index.js";
import { tokenizerFromGguf } from "../src/model/gguf/tokenizer.js";

const text = readFileSync("test/fixtures/palma2025/sst2_train.csv", "utf8").slice(0, 100_000);

function timeIt(fn: () => number, reps = 3): { ms: number; tokens: number } {
  let best = Infinity;
  let tokens = 0;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    tokens = fn();
    best = Math.min(best, performance.now() - t0);
  }
  return { ms: best, tokens };
}

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never });
const cases: [string, string, () => Promise<Tokenizer>][] = [
  ["SPM (llama-spm GGUF)", "test/fixtures/ggml-vocab/ggml-vocab-llama-spm.gguf", () => tokenizerFromGguf("test/fixtures/ggml-vocab/ggml-vocab-llama-spm.gguf")],
  ["BPE (gpt-2 GGUF)", "test/fixtures/ggml-vocab/ggml-vocab-gpt-2.gguf", () => tokenizerFromGguf("test/fixtures/ggml-vocab/ggml-vocab-gpt-2.gguf")],
  ["BPE (gpt2 tokenizer.json)", "test/fixtures/ggml-vocab/ggml-vocab-gpt-2.gguf", () => tokenizerFromHfFolder("test/fixtures/hf-tokenizers/gpt2")],
];
console.log(`text: ${text.length} chars`);
for (const [name, ggufPath, load] of cases) {
  const t0 = performance.now();
  const tok = await load();
  const loadMs = performance.now() - t0;
  const ours = timeIt(() => tok.encode(text, { addBos: false, parseSpecial: false }).length);
  const model = await llama.loadModel({ modelPath: ggufPath, vocabOnly: true });
  const ref = timeIt(() => model.tokenize(text, false).length);
  await model.dispose();
  const ourRate = ours.tokens / (ours.ms / 1000);
  const refRate = ref.tokens / (ref.ms / 1000);
  console.log(
    `${name.padEnd(28)} load ${loadMs.toFixed(0)} ms | onepass ${ours.tokens} tok in ${ours.ms.toFixed(1)} ms = ${(ourRate / 1000).toFixed(0)}k tok/s` +
      ` | llama.cpp ${ref.tokens} tok = ${(refRate / 1000).toFixed(0)}k tok/s | ratio onepass/llama.cpp ${(ourRate / refRate).toFixed(2)}`,
  );
}
