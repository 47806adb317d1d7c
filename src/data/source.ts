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
  /**
   * Prompt + response in one pass, the response's states kept: [L+1, R, d]. The prompt is tokenised as a live
   * request would be (chat: user message + generation prompt), the response as the continuation the model would
   * have generated (no BOS), its first `maxTokens` tokens at most.
   */
  const responseHidden = async (prompt: string, response: string, maxTokens?: number): Promise<HiddenStates> => {
    const p = tokensOf(prompt);
    let r = engine.tokenizer.encode(response, { addBos: false });
    if (maxTokens !== undefined) r = r.slice(0, maxTokens);
    if (r.length === 0) throw new FeatureCacheError("the response has no tokens", { field: "response" });
    // the prompt gives way when prompt + response do not fit: its last tokens are the nearest context
    const keep = Math.max(0, Math.min(p.length, engine.contextLength - r.length));
    const ids = [...p.slice(p.length - keep), ...r];
    const pass = await engine.forward(ids, { hidden: true });
    if (pass.hidden === undefined) throw new FeatureCacheError("the engine returned no hidden states", { file: engine.path, field: "hidden" });
    return pass.hidden.sliceTokens(keep, ids.length); // [L+1, R, d]
  };
  return {
    fingerprint: engine.fingerprint,
    modelName: engine.spec.name,
    layers: engine.spec.blocks + 1,
    dim: engine.spec.dim,
    tokenization: { addBos: engine.tokenizer.addBosByDefault, template },
    countTokens: (text) => tokensOf(text).length,
    async hidden(text, { maxTokens, response }): Promise<HiddenStates> {
      if (response !== undefined) return responseHidden(text, response, maxTokens);
      let ids = tokensOf(text);
      if (maxTokens !== undefined && ids.length > maxTokens) ids = ids.slice(0, maxTokens);
      const pass = await engine.forward(ids, { hidden: true });
      if (pass.hidden === undefined) throw new FeatureCacheError("the engine returned no hidden states", { file: engine.path, field: "hidden" });
      return pass.hidden;
    },
  };
}
