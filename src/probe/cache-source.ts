/**
 * Feature caches (src/data/features.ts) as probe training sources. "full" caches hold [L+1, T, d] and serve
 * every probe kind; "summary" caches hold per-layer [mean, max] rows ([L+1, 2, d]) and serve only probes
 * that need nothing else: pooling (mean|max) and fixed probes with token = mean|max.
 */
import { HiddenStates } from "../types/hidden.js";
import { FeatureCacheError } from "../errors.js";
import type { FeatureCache } from "../data/features.js";
import type { ProbeConfig } from "./probe.js";
import type { ExampleSource } from "./train.js";

/** One row of each layer of a summary: [L+1, 1, d]. */
function summaryRow(h: HiddenStates, row: 0 | 1): HiddenStates {
  const out = new Float32Array(h.layers * h.dim); // [L+1, 1, d]
  for (let l = 0; l < h.layers; l++) out.set(h.token(l, row), l * h.dim);
  return new HiddenStates(h.layers, 1, h.dim, out);
}

export function cacheSource(cache: FeatureCache, config: ProbeConfig): ExampleSource {
  if (cache.manifest.mode === "full") return { size: cache.size, labels: cache.labels, get: (i) => cache.get(i), tokens: (i) => cache.tokens(i) };
  let row: 0 | 1;
  if (config.kind === "pooling") row = (config.pool ?? "mean") === "max" ? 1 : 0;
  else if (config.kind === "fixed" && config.token === "mean") row = 0;
  else if (config.kind === "fixed" && config.token === "max") row = 1;
  else {
    throw new FeatureCacheError(
      `a summary cache (per-layer mean/max) cannot train a ${config.kind}${config.kind === "fixed" ? " (last-token)" : ""} probe; extract with --mode full`,
      { file: cache.dir, field: "mode" },
    );
  }
  return { size: cache.size, labels: cache.labels, get: (i) => summaryRow(cache.get(i), row) };
}
