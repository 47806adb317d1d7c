/**
 * Zero-shot prompting of the serving model: the text, then a label question; the label whose word's first
 * token has the highest next-token log-probability wins. One forward pass per text, no training.
 */
import type { Engine } from "../engine/engine.js";
import { InvalidArgumentError } from "../errors.js";
import { logSoftmaxRows } from "./muli.js";

export interface PromptingOptions {
  /** The label words, one per class (e.g. ["negative", "positive"]). */
  labelWords: readonly string[];
  /** The prompt around the text: `{text}` is replaced (default: `{text}\nQuestion: which label fits? Answer:`). */
  template?: string;
  /** Wrap the prompt as a user message in the chat template (default false). */
  chat?: boolean;
  /** Keep the text's first maxTokens tokens (default: no cut). */
  maxTextTokens?: number;
}

/**
 * The token id a label word starts with when it follows other text after a space: the first token of
 * "a WORD" past those of "a" (encoding " WORD" alone would give SentencePiece's lone "▁" first).
 */
export function labelTokenIds(engine: Engine, words: readonly string[]): number[] {
  const head = engine.tokenizer.encode("a", { addBos: false }).length;
  const ids = words.map((w) => {
    const t = engine.tokenizer.encode(`a ${w}`, { addBos: false });
    if (t.length <= head) throw new InvalidArgumentError(`label word '${w}' encodes to no token`, { field: "labelWords" });
    return t[head];
  });
  const dup = ids.findIndex((id, i) => ids.indexOf(id) !== i);
  if (dup >= 0) throw new InvalidArgumentError(`label words '${words[ids.indexOf(ids[dup])]}' and '${words[dup]}' start with the same token`, { field: "labelWords" });
  return ids;
}

/** Scores [N, C]: the log-probability of each label word's first token after each prompt (softmax-able). */
export async function promptScores(engine: Engine, texts: readonly string[], o: PromptingOptions, onProgress?: (done: number) => void): Promise<Float32Array> {
  if (o.labelWords.length < 2) throw new InvalidArgumentError("need at least two label words", { field: "labelWords" });
  const template = o.template ?? "{text}\nQuestion: which label fits? Answer:";
  if (!template.includes("{text}")) throw new InvalidArgumentError("the template has no {text}", { field: "template" });
  const ids = labelTokenIds(engine, o.labelWords);
  const C = ids.length;
  const out = new Float32Array(texts.length * C); // [N, C]
  for (let i = 0; i < texts.length; i++) {
    let text = texts[i];
    if (o.maxTextTokens !== undefined) {
      const t = engine.tokenizer.encode(text, { addBos: false });
      if (t.length > o.maxTextTokens) text = engine.tokenizer.decode(t.slice(0, o.maxTextTokens));
    }
    const prompt = engine.promptTokens({ prompt: template.replace("{text}", text), chat: o.chat === true });
    const pass = await engine.forward(prompt);
    const V = pass.logits.length / pass.positions;
    const lp = logSoftmaxRows(pass.logits.subarray((pass.positions - 1) * V), V); // [V] last position
    for (let c = 0; c < C; c++) out[i * C + c] = lp[ids[c]];
    onProgress?.(i + 1);
  }
  return out;
}
