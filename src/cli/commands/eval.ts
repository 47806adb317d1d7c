/** `onepass eval`: metrics of a trained probe on a feature cache, optionally an HTML report with plots. */
import { checkPageTarget } from "../page-target.js";
import { resolve } from "node:path";
import type { Command } from "../command.js";
import { ProgressBar } from "../progress.js";
import { FeatureCacheError, InvalidArgumentError, ProbeError } from "../../errors.js";
import { writeFileAtomic } from "../../util/atomic.js";
import { openFeatureCache, tokenizationDifferences } from "../../data/features.js";
import { loadProbe } from "../../probe/artifact.js";
import { cacheSource } from "../../probe/cache-source.js";
import { labelIndexMap, parseLabelMap } from "../../probe/label-map.js";
import { parseFlags, required } from "../args.js";
import { evaluateProbe } from "../../probe/evaluate.js";
import { REPORT_MARKER, reportHtml } from "../../pages/report.js";

const usage = `usage: onepass eval --probe P --features DIR [--label-map A=B,...] [--report out.html] [--json]

Scores a trained probe on cached hidden states (same model: the fingerprints must match). Prints accuracy,
macro-F1 and, for binary tasks, F1/precision/recall at the probe's threshold, AUPRC, ROC-AUC; ECE (15 bins).

  --probe P             probe folder (from onepass train)
  --features DIR        feature cache to evaluate on (from onepass extract)
  --label-map MAP       dataset label = probe label pairs, e.g. 0=non-toxic,1=toxic, when the cache's label
                        names differ from the probe's (default: names must match)
  --report FILE         write an HTML report with inline SVG plots (layer weights per class, PR, ROC,
                        confusion matrix, calibration)
  --json                print the metrics as JSON
  --quiet               no progress bar
`;

export const evalCommand: Command = {
  name: "eval",
  summary: "evaluate a probe on cached hidden states (metrics, HTML report)",
  usage,
  async run(argv) {
    const v = parseFlags(argv, { probe: { type: "string" }, features: { type: "string" }, "label-map": { type: "string" }, report: { type: "string" }, json: { type: "boolean" }, quiet: { type: "boolean" } }, usage);
    const probeDir = required("probe", v.probe, usage);
    const featuresDir = required("features", v.features, usage);
    // Fail before the (possibly long) evaluation when the report cannot be written.
    if (v.report !== undefined) {
      checkPageTarget(v.report, REPORT_MARKER, "--report");
    }
    const cache = openFeatureCache(featuresDir);
    try {
      const { probe, meta } = loadProbe(probeDir, { expectFingerprint: cache.manifest.model.fingerprint });
      let source = cacheSource(cache, probe.config);
      if (v["label-map"] !== undefined) {
        const toProbe = labelIndexMap(cache.labelNames, meta.labelNames, parseLabelMap(v["label-map"])); // [C_data]
        source = { ...source, labels: Int32Array.from(source.labels, (c) => toProbe[c]) };
      } else if (meta.labelNames.join("\u0000") !== cache.labelNames.join("\u0000")) {
        throw new ProbeError(`probe labels [${meta.labelNames}] differ from the cache's [${cache.labelNames}] (map them, e.g. --label-map ${cache.labelNames.map((n, i) => `${n}=${meta.labelNames[i] ?? "?"}`).join(",")})`, { file: resolve(probeDir, "probe.json"), field: "labelNames" });
      }
      const diff = meta.tokenization === undefined ? [] : tokenizationDifferences(meta.tokenization, cache.manifest.tokenization, ["the probe's training data", "these features"]);
      if (diff.length > 0) {
        throw new FeatureCacheError(`tokenised unlike the probe's training data: ${diff.join("; ")} (extract with the same --chat/--max-tokens)`, { file: featuresDir, field: "tokenization" });
      }
      const bar = new ProgressBar({ total: cache.size, label: "eval", unit: "ex", enabled: v.quiet !== true && v.json !== true });
      const ev = await evaluateProbe(probe, source, { threshold: meta.threshold, onProgress: (d) => bar.update(d) });
      bar.finish();
      if (v.report !== undefined) {
        writeFileAtomic(v.report, reportHtml(ev, { title: `${meta.config.kind} probe on ${cache.manifest.dataset.name}`, labelNames: meta.labelNames, probeDir, featuresDir, meta }));
      }
      if (v.json === true) process.stdout.write(JSON.stringify({ ...ev.metrics, layerWeightsByClass: ev.layerWeightsByClass }, null, 2) + "\n");
      else {
        const m = ev.metrics;
        const lines = [`${m.n} examples: accuracy ${m.accuracy.toFixed(4)}, macro-F1 ${m.macroF1.toFixed(4)}, ECE ${m.ece.toFixed(4)}`];
        if (m.f1 !== undefined) lines.push(`F1 ${m.f1.toFixed(4)} (precision ${m.precision!.toFixed(4)}, recall ${m.recall!.toFixed(4)}) ${m.threshold !== undefined ? `at threshold ${m.threshold.toFixed(4)}` : "at argmax"}; AUPRC ${m.auprc!.toFixed(4)}, ROC-AUC ${m.rocAuc!.toFixed(4)}`);
        if (v.report !== undefined) lines.push(`report: ${v.report}`);
        process.stdout.write(lines.join("\n") + "\n");
      }
      return 0;
    } finally {
      cache.close();
    }
  },
};
