/**
 * A deterministic stand-in for the engine in feature-cache tests: hidden states are a fixed function of
 * the text (so a rerun in another process reproduces them), optionally slowed down to make a run killable.
 */
import { HiddenStates } from "../src/types/hidden.js";
import type { HiddenStateSource } from "../src/data/features.js";

export const FAKE_LAYERS = 3;
export const FAKE_DIM = 8;

export function fakeTokens(text: string): number {
  return 1 + (text.length % 9);
}

/** [L+1, T, d] values spread over a wide range (tiny, subnormal-in-fp16 and large magnitudes). */
export function fakeHidden(text: string, layers = FAKE_LAYERS, dim = FAKE_DIM): HiddenStates {
  let seed = 0;
  for (let i = 0; i < text.length; i++) seed = (seed * 31 + text.charCodeAt(i)) >>> 0;
  const T = fakeTokens(text);
  const data = new Float32Array(layers * T * dim); // [L+1, T, d]
  for (let k = 0; k < data.length; k++) {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    const u = seed / 2 ** 32; // [0, 1)
    const scale = 2 ** (Math.floor(u * 1000) % 30 - 18); // 2^-18 .. 2^11
    data[k] = (u - 0.5) * scale;
  }
  return new HiddenStates(layers, T, dim, data);
}

export function fakeSource(options: { fingerprint?: string; delayMs?: number; layers?: number; dim?: number } = {}): HiddenStateSource {
  const layers = options.layers ?? FAKE_LAYERS;
  const dim = options.dim ?? FAKE_DIM;
  return {
    fingerprint: options.fingerprint ?? "fake-model-1",
    layers,
    dim,
    tokenization: { addBos: true, template: "raw" },
    countTokens: fakeTokens,
    async hidden(text) {
      if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
      return fakeHidden(text, layers, dim);
    },
  };
}

export function fakeExamples(n: number): { text: string; label: number }[] {
  return Array.from({ length: n }, (_, i) => ({ text: `example number ${i} ${"x".repeat(i % 13)}`, label: i % 3 }));
}
