/** The engine as a HiddenStateSource for the feature cache. */
import type { Engine } from "../engine/engine.js";
import type { HiddenStates } from "../types/hidden.js";
import { FeatureCacheError } from "../errors.js";
import type { HiddenStateSource } from "./features.js";

export interface EngineSourceOptions {
  /** "raw" (default): the text as is, with the tokenizer's default BOS; "chat": as one user message in the chat template. */
  template?: "raw" | "chat";
}

/**
 * Hidden states [L+1, T, d] of each text from one forward pass of the engine (loaded with taps). Texts longer
 * than maxTokens are cut to their first maxTokens tokens before the pass.
 */
export function engineSource(engine: Engine, options: EngineSourceOptions = {}): HiddenStateSource {
  const template = options.template ?? "raw";
  const chat = template === "chat";
  const tokensOf = (text: string) => engine.promptTokens({ prompt: text, chat });
  return {
    fingerprint: engine.fingerprint,
    modelName: engine.spec.name,
    layers: engine.spec.blocks + 1,
    dim: engine.spec.dim,
    tokenization: { addBos: engine.tokenizer.addBosByDefault, template },
    countTokens: (text) => tokensOf(text).length,
    async hidden(text, { maxTokens }): Promise<HiddenStates> {
      let ids = tokensOf(text);
      if (maxTokens !== undefined && ids.length > maxTokens) ids = ids.slice(0, maxTokens);
      const pass = await engine.forward(ids, { hidden: true });
      if (pass.hidden === undefined) throw new FeatureCacheError("the engine returned no hidden states", { file: engine.path, field: "hidden" });
      return pass.hidden;
    },
  };
}
