/**
 * The probe evaluation page: a self-contained HTML report with inline SVG plots — layer weights per class,
 * PR curve, ROC curve, confusion matrix, calibration (reliability) diagram.
 */
import type { Evaluation } from "../probe/evaluate.js";
import { calibrationBins, confusionMatrix, positiveScores, prCurve, rocCurve } from "../probe/metrics.js";

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
const W = 360, H = 260, M = 40;

/**
 * Tick values 0..max for an integer axis (layers): every integer when they fit, else a round step, always
 * ending on max.
 */
export function integerTicks(max: number, maxTicks = 11): number[] {
  const n = Math.max(0, Math.round(max));
  const step = Math.max(1, Math.ceil(n / (maxTicks - 1)));
  const ticks: number[] = [];
  for (let t = 0; t < n; t += step) ticks.push(t);
  if (ticks.length > 1 && n - ticks[ticks.length - 1] < step / 2) ticks.pop();
  ticks.push(n);
  return ticks;
}

function axes(xLabel: string, yLabel: string, xMax = 1, yMax = 1, xIntegers = false): string {
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  // Integer axes (layers) get integer ticks only: a "layer 1.25" does not exist.
  const xTicks = xIntegers ? integerTicks(xMax).map((v) => v / Math.max(1, xMax)) : ticks;
  return [
    `<line x1="${M}" y1="${H - M}" x2="${W - 10}" y2="${H - M}" stroke="#000"/><line x1="${M}" y1="10" x2="${M}" y2="${H - M}" stroke="#000"/>`,
    ...xTicks.map((t) => `<text x="${M + t * (W - M - 10)}" y="${H - M + 14}" font-size="10" text-anchor="middle">${+(t * xMax).toFixed(2)}</text>`),
    ...ticks.map((t) => `<text x="${M - 4}" y="${H - M - t * (H - M - 10) + 3}" font-size="10" text-anchor="end">${+(t * yMax).toFixed(2)}</text>`),
    `<text x="${(W + M) / 2}" y="${H - 6}" font-size="11" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text x="12" y="${H / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 12 ${H / 2})">${esc(yLabel)}</text>`,
  ].join("");
}

function polyline(xs: number[], ys: number[], color: string, xMax = 1, yMax = 1, dash = ""): string {
  const pts = xs.map((x, i) => `${(M + (x / xMax) * (W - M - 10)).toFixed(1)},${(H - M - (ys[i] / yMax) * (H - M - 10)).toFixed(1)}`).join(" ");
  return `<polyline fill="none" stroke="${color}" stroke-width="1.5" ${dash ? `stroke-dasharray="${dash}"` : ""} points="${pts}"/>`;
}

// Per-class dash patterns and marker shapes, so that classes whose lines coincide stay distinguishable.
const DASHES = ["", "6 3", "2 2", "8 3 2 3", "4 4", "1 3", "10 4", "3 6"];
const MARKERS = ["circle", "square", "triangle", "diamond", "cross", "triangle-down", "plus", "x"] as const;

/** A marker of `shape` centred at (cx, cy), outlined in `color` (hollow, so overlapping markers show through). */
function marker(shape: (typeof MARKERS)[number], cx: number, cy: number, color: string, r = 3.5): string {
  const st = `fill="none" stroke="${color}" stroke-width="1.3"`;
  const poly = (pts: [number, number][]) => `<polygon ${st} points="${pts.map(([x, y]) => `${(cx + x).toFixed(1)},${(cy + y).toFixed(1)}`).join(" ")}"/>`;
  const path = (d: string) => `<path ${st} d="${d}"/>`;
  switch (shape) {
    case "circle": return `<circle ${st} cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="${r}"/>`;
    case "square": return poly([[-r, -r], [r, -r], [r, r], [-r, r]]);
    case "triangle": return poly([[0, -r * 1.2], [r * 1.1, r * 0.8], [-r * 1.1, r * 0.8]]);
    case "triangle-down": return poly([[0, r * 1.2], [r * 1.1, -r * 0.8], [-r * 1.1, -r * 0.8]]);
    case "diamond": return poly([[0, -r * 1.3], [r * 1.3, 0], [0, r * 1.3], [-r * 1.3, 0]]);
    case "plus": return path(`M${cx - r},${cy}h${2 * r}M${cx},${cy - r}v${2 * r}`);
    case "cross":
    case "x": return path(`M${cx - r},${cy - r}l${2 * r},${2 * r}M${cx - r},${cy + r}l${2 * r},${-2 * r}`);
  }
}

/** Series c of a multi-series line plot: its own colour, dash pattern and marker at every point. */
function seriesLine(xs: number[], ys: number[], c: number, xMax: number, yMax: number): string {
  const color = COLORS[c % COLORS.length];
  const px = (x: number) => M + (x / xMax) * (W - M - 10), py = (y: number) => H - M - (y / yMax) * (H - M - 10);
  return polyline(xs, ys, color, xMax, yMax, DASHES[c % DASHES.length]) + xs.map((x, i) => marker(MARKERS[c % MARKERS.length], px(x), py(ys[i]), color)).join("");
}

function svg(title: string, body: string): string {
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${body}</svg></figure>`;
}

/** Legend entries; with `lines`, each shows the series' dash pattern and marker instead of a colour swatch. */
function legend(names: string[], lines = false): string {
  return names.map((n, i) => {
    const color = COLORS[i % COLORS.length], y = 18 + i * 14;
    const key = lines
      ? `<line x1="${W - 122}" y1="${y}" x2="${W - 100}" y2="${y}" stroke="${color}" stroke-width="1.5" ${DASHES[i % DASHES.length] ? `stroke-dasharray="${DASHES[i % DASHES.length]}"` : ""}/>${marker(MARKERS[i % MARKERS.length], W - 111, y, color)}`
      : `<rect x="${W - 110}" y="${y - 9}" width="10" height="10" fill="${color}"/>`;
    return `${key}<text x="${W - 96}" y="${y + 4}" font-size="10">${esc(n)}</text>`;
  }).join("");
}

/** Marks a file as an onepass report: `eval --report` replaces an existing file only when it carries this. */
export const REPORT_MARKER = '<meta name="generator" content="onepass eval report">';

/** A standalone HTML page (no external resources). */
export function reportHtml(ev: Evaluation, info: { title: string; labelNames: string[]; probeDir?: string; featuresDir?: string; meta?: object }): string {
  const C = info.labelNames.length;
  const figs: string[] = [];
  if (ev.layerWeightsByClass !== undefined) {
    const L1 = ev.layerWeightsByClass[0].length;
    const yMax = Math.max(1e-9, ...ev.layerWeightsByClass.flat());
    const body = axes("layer (0 = embeddings)", "mean layer weight", L1 - 1, yMax, true) + ev.layerWeightsByClass.map((row, c) => seriesLine(row.map((_, l) => l), row, c, Math.max(1, L1 - 1), yMax)).join("") + legend(info.labelNames, true);
    figs.push(svg("Layer-gate weights per true class", body));
  }
  if (C === 2) {
    const scores = positiveScores(ev.probs); // [N]
    const pr = prCurve(ev.labels, scores);
    figs.push(svg(`Precision–recall (AUPRC ${ev.metrics.auprc?.toFixed(3)})`, axes("recall", "precision") + polyline([0, ...pr.recall], [pr.precision[0] ?? 1, ...pr.precision], COLORS[0])));
    const roc = rocCurve(ev.labels, scores);
    figs.push(svg(`ROC (AUC ${ev.metrics.rocAuc?.toFixed(3)})`, axes("false-positive rate", "true-positive rate") + polyline([0, 1], [0, 1], "#aaa", 1, 1, "4 3") + polyline(roc.fpr, roc.tpr, COLORS[0])));
  }
  const cal = calibrationBins(ev.labels, ev.probs, C);
  const bw = (W - M - 10) / cal.count.length;
  const bars = cal.accuracy.map((a, b) => (cal.count[b] > 0 ? `<rect x="${(M + b * bw + 1).toFixed(1)}" y="${(H - M - a * (H - M - 10)).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(a * (H - M - 10)).toFixed(1)}" fill="${COLORS[0]}" opacity="0.7"><title>n=${cal.count[b]}, conf ${cal.confidence[b].toFixed(3)}</title></rect>` : "")).join("");
  figs.push(svg(`Calibration (ECE ${ev.metrics.ece.toFixed(3)}, 15 bins)`, axes("confidence", "accuracy") + bars + polyline([0, 1], [0, 1], "#aaa", 1, 1, "4 3")));
  const cm = confusionMatrix(ev.labels, ev.preds, C);
  // Cells shrink so that every row fits the figure's height too (6 emotion classes overflowed it before).
  const cell = Math.min(60, (W - M - 10) / C, (H - 24) / C), maxc = Math.max(1, ...cm.flat());
  const cmBody = cm.map((row, i) => row.map((v, j) => `<rect x="${M + j * cell}" y="${20 + i * cell}" width="${cell}" height="${cell}" fill="rgba(31,119,180,${(v / maxc).toFixed(3)})" stroke="#fff"/><text x="${M + (j + 0.5) * cell}" y="${20 + (i + 0.5) * cell + 4}" font-size="11" text-anchor="middle">${v}</text>`).join("")).join("")
    + info.labelNames.map((n, i) => `<text x="${M - 4}" y="${20 + (i + 0.5) * cell + 4}" font-size="9" text-anchor="end">${esc(n.slice(0, 8))}</text><text x="${M + (i + 0.5) * cell}" y="${14}" font-size="10" text-anchor="middle">${esc(n.slice(0, Math.max(3, Math.floor(cell / 6))))}</text>`).join("");
  figs.push(svg("Confusion matrix (rows: true, columns: predicted)", cmBody));
  const rows = Object.entries(ev.metrics).filter(([, v]) => v !== undefined).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${typeof v === "number" ? (Number.isInteger(v) ? v : v.toFixed(4)) : esc(String(v))}</td></tr>`).join("");
  return `<!doctype html><html><head><meta charset="utf-8">${REPORT_MARKER}<title>${esc(info.title)}</title>
<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:1em}figcaption{font-weight:bold;font-size:13px}table{border-collapse:collapse}td{border:1px solid #ccc;padding:2px 8px}</style></head><body>
<h1>${esc(info.title)}</h1>
<p>probe: ${esc(info.probeDir ?? "")} — features: ${esc(info.featuresDir ?? "")} — ${ev.labels.length} examples</p>
<table>${rows}</table>
${figs.join("\n")}
${info.meta !== undefined ? `<details><summary>probe.json</summary><pre>${esc(JSON.stringify(info.meta, null, 2))}</pre></details>` : ""}
</body></html>
`;
}
