/**
 * The evaluation report: one self-contained HTML page (inline SVG and CSS, no script, nothing fetched) from
 * the quality and cost benchmarks' JSON files — both tables in the paper's layout and bar charts of each.
 */
import { assertRegularFile } from "../util/fs-errors.js";
import { readFileSync } from "node:fs";
import { InvalidArgumentError } from "../errors.js";
import { QUALITY_METHODS, QUALITY_TASK_ORDER, inPaperOrder } from "../types/quality.js";

export interface QualityRun {
  task: string; method: string; seed: number; params: number; test: { accuracy: number; f1?: number; auprc?: number };
  /** The task's reported metric ("f1": F1 and AUPRC columns; "accuracy"); default f1 when the run has F1. */
  metric?: "f1" | "accuracy";
  /** Binary tasks: the test precision–recall curve. */
  pr?: { precision: number[]; recall: number[] };
  /** Scoring probes: mean gate weights [L+1] per true class and per correct / incorrect test prediction. */
  layerWeights?: { byClass: number[][]; correct: number[]; incorrect: number[]; labelNames?: string[] };
}
export interface QualityResults { runs: QualityRun[]; machine?: string; wallSeconds?: number }
export interface CostRow { setup: string; variant: string; medianMs: number; p95Ms: number; ratio: number; pairedRatio?: number }
export interface CostResults { rows: CostRow[]; machine?: string; samples?: number; peakRssMiB?: number; wallSeconds?: number }

/** Reads benchmark result files; each must be a quality (`runs`) or cost (`rows`) JSON. */
export function readResults(paths: readonly string[]): { quality: QualityResults[]; cost: CostResults[] } {
  const quality: QualityResults[] = [], cost: CostResults[] = [];
  for (const file of paths) {
    let j: any;
    assertRegularFile(file); // a FIFO would block the read forever
    try {
      j = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new InvalidArgumentError(`cannot read results: ${(err as Error).message.split("\n")[0]}`, { file }, { cause: err });
    }
    if (Array.isArray(j?.runs) && j.runs.every((r: any) => typeof r?.task === "string" && typeof r?.method === "string" && typeof r?.test?.accuracy === "number")) quality.push(j);
    else if (Array.isArray(j?.rows) && j.rows.every((r: any) => typeof r?.variant === "string" && typeof r?.medianMs === "number" && typeof r?.ratio === "number")) cost.push(j);
    else throw new InvalidArgumentError("not a quality (runs[]) or cost (rows[]) result file", { file, field: "runs" });
  }
  return { quality, cost };
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

function meanStd(xs: number[]): { mean: number; std: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const v = xs.length > 1 ? xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1) : 0;
  return { mean, std: Math.sqrt(v) };
}

/** Columns of the quality table: safety tasks (those with F1) give F1 and AUPRC, the others accuracy. */
interface Column { task: string; key: "accuracy" | "f1" | "auprc"; label: string }
function columns(runs: QualityRun[]): Column[] {
  const tasks = inPaperOrder(runs.map((r) => r.task), QUALITY_TASK_ORDER);
  return tasks.flatMap((t): Column[] => { const r = runs.find((x) => x.task === t)!; return (r.metric ?? (r.test.f1 !== undefined ? "f1" : "accuracy")) === "f1"
    ? [{ task: t, key: "f1", label: `${t} F1` }, { task: t, key: "auprc", label: `${t} AUPRC` }]
    : [{ task: t, key: "accuracy", label: `${t} acc` }]; });
}

function qualitySection(q: QualityResults): string {
  const methods = inPaperOrder(q.runs.map((r) => r.method), QUALITY_METHODS);
  const cols = columns(q.runs);
  const cell = (m: string, c: (typeof cols)[number]) => {
    const xs = q.runs.filter((r) => r.method === m && r.task === c.task).map((r) => r.test[c.key]).filter((v): v is number => typeof v === "number");
    return xs.length === 0 ? undefined : { ...meanStd(xs), n: xs.length };
  };
  const seeds = Math.max(...methods.flatMap((m) => cols.map((c) => cell(m, c)?.n ?? 0))); // the most seeds any cell has
  const shown = (s: { mean: number; std: number; n: number }) =>
    s.n === 1 ? `${s.mean.toFixed(3)} (1 seed)` : `${s.mean.toFixed(3)} ± ${s.std.toFixed(3)}${s.n < seeds ? ` (${s.n} seeds)` : ""}`;
  const rows = methods.map((m) => `<tr><th>${esc(m)}</th>${cols.map((c) => { const s = cell(m, c); return `<td>${s === undefined ? "—" : shown(s)}</td>`; }).join("")}</tr>`);
  const table = `<table class="quality"><thead><tr><th>method</th>${cols.map((c) => `<th>${esc(c.label)}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
  // grouped bars: one group per column, one bar per method, error bars ± std
  const gw = Math.max(120, 40 + methods.length * 14), W = 60 + cols.length * gw, H = 260, top = 20, bottom = 200;
  const y = (v: number) => bottom - v * (bottom - top);
  const bars: string[] = [];
  cols.forEach((c, ci) => {
    methods.forEach((m, mi) => {
      const s = cell(m, c);
      if (s === undefined) return;
      const x = 50 + ci * gw + mi * 14;
      bars.push(`<rect class="bar" x="${x}" y="${y(s.mean).toFixed(1)}" width="12" height="${(bottom - y(s.mean)).toFixed(1)}" fill="${COLORS[mi % COLORS.length]}"><title>${esc(m)} ${esc(c.label)}: ${s.mean.toFixed(3)} ± ${s.std.toFixed(3)}</title></rect>`);
      if (s.std > 0) bars.push(`<line x1="${x + 6}" x2="${x + 6}" y1="${y(s.mean + s.std).toFixed(1)}" y2="${y(Math.max(0, s.mean - s.std)).toFixed(1)}" stroke="#000"/>`);
    });
    bars.push(`<text x="${50 + ci * gw + (methods.length * 14) / 2}" y="${bottom + 16}" font-size="11" text-anchor="middle">${esc(c.label)}</text>`);
  });
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((v) => `<line x1="45" x2="${W - 5}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="40" y="${y(v) + 4}" font-size="10" text-anchor="end">${v}</text>`).join("");
  const legend = methods.map((m, i) => `<rect x="${50 + i * 110}" y="${H - 22}" width="10" height="10" fill="${COLORS[i % COLORS.length]}"/><text x="${64 + i * 110}" y="${H - 13}" font-size="11">${esc(m)}</text>`).join("");
  const CW = Math.max(W, 60 + methods.length * 110);
  // scaled to the page width: with many tasks the drawing is wider than the page
  const chart = `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 ${CW} ${H}">${ticks}${bars.join("")}${legend}</svg>`;
  const info = [q.machine !== undefined ? `machine: ${esc(q.machine)}` : "", q.wallSeconds !== undefined ? `wall ${q.wallSeconds.toFixed(0)} s` : ""].filter(Boolean).join("; ");
  return `<h2>Quality (test split, mean ± std over seeds)</h2><p>${info}</p>${table}${chart}`;
}

/** Element-wise mean of equally long rows. */
const meanRows = (rows: number[][]) => rows[0].map((_, l) => rows.reduce((a, r) => a + r[l], 0) / rows.length);

/** One line chart: x = 0..n−1 (layers), y in [0, max]; `series` are [name, values, colour]. */
function lineChart(cls: string, title: string, series: [string, number[], string][], xLabel: (i: number) => string, yMax: number, dashed: Set<string> = new Set()): string {
  const W = 420, H = 240, left = 44, right = 12, top = 24, bottom = 190;
  const n = Math.max(...series.map(([, v]) => v.length));
  const x = (i: number) => left + (n <= 1 ? 0 : (i / (n - 1)) * (W - left - right));
  const y = (v: number) => bottom - (v / yMax) * (bottom - top);
  const ticks = [0, 0.5, 1].map((f) => `<line x1="${left}" x2="${W - right}" y1="${y(f * yMax).toFixed(1)}" y2="${y(f * yMax).toFixed(1)}" stroke="#ddd"/><text x="${left - 4}" y="${(y(f * yMax) + 4).toFixed(1)}" font-size="10" text-anchor="end">${(f * yMax).toFixed(2)}</text>`).join("");
  const xt = Array.from({ length: n }, (_, i) => `<text x="${x(i).toFixed(1)}" y="${bottom + 14}" font-size="10" text-anchor="middle">${esc(xLabel(i))}</text>`).join("");
  const lines = series.map(([name, v, colour]) => `<path class="series" d="${v.map((u, i) => `${i === 0 ? "M" : "L"}${x(i).toFixed(1)},${y(u).toFixed(1)}`).join("")}" fill="none" stroke="${colour}" stroke-width="2"${dashed.has(name) ? ' stroke-dasharray="5 3"' : ""}><title>${esc(name)}</title></path>`).join("");
  const legend = series.map(([name, , colour], i) => `<rect x="${left + (i % 3) * 125}" y="${H - 30 + Math.floor(i / 3) * 13}" width="10" height="3" fill="${colour}"/><text x="${left + 14 + (i % 3) * 125}" y="${H - 26 + Math.floor(i / 3) * 13}" font-size="10">${esc(name)}</text>`).join("");
  return `<svg class="chart ${cls}" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H + 10 * Math.max(0, Math.ceil(series.length / 3) - 2)}"><text x="${left}" y="14" font-size="12" font-weight="bold">${esc(title)}</text>${ticks}${xt}${lines}${legend}</svg>`;
}

/** The paper's layer analysis: the scoring gate's mean weight per layer, per true class and per (in)correct prediction, averaged over seeds. */
function layerSection(q: QualityResults): string {
  const tasks = inPaperOrder(q.runs.filter((r) => r.layerWeights !== undefined).map((r) => r.task), QUALITY_TASK_ORDER);
  if (tasks.length === 0) return "";
  const charts = tasks.map((t) => {
    const runs = q.runs.filter((r) => r.task === t && r.layerWeights !== undefined);
    const lw = runs.map((r) => r.layerWeights!);
    const names = lw[0].labelNames ?? lw[0].byClass.map((_, c) => `class ${c}`);
    const series: [string, number[], string][] = [
      ...lw[0].byClass.map((_, c): [string, number[], string] => [names[c] ?? `class ${c}`, meanRows(lw.map((w) => w.byClass[c])), COLORS[c % COLORS.length]]),
      ["correct", meanRows(lw.map((w) => w.correct)), "#000"],
      ["incorrect", meanRows(lw.map((w) => w.incorrect)), "#888"],
    ];
    const yMax = Math.min(1, Math.max(0.05, ...series.flatMap(([, v]) => v)) * 1.15);
    return lineChart("layers", `${t}: scoring gate weight per layer (${runs.length} seed${runs.length === 1 ? "" : "s"})`, series, (i) => (i === 0 ? "emb" : String(i)), yMax, new Set(["correct", "incorrect"]));
  });
  return `<h2>Layer analysis (scoring probe)</h2><p>Mean softmax weight the scoring gate gives each hidden layer (0 = embeddings) on the test split, per true class (solid) and per correct / incorrect prediction (dashed), averaged over seeds.</p><div class="row">${charts.join("")}</div>`;
}

/** Precision–recall curves of every method on each safety task (the first seed's run). */
function prSection(q: QualityResults): string {
  const tasks = inPaperOrder(q.runs.filter((r) => r.pr !== undefined && (r.metric ?? (r.test.f1 !== undefined ? "f1" : "accuracy")) === "f1").map((r) => r.task), QUALITY_TASK_ORDER);
  if (tasks.length === 0) return "";
  const methods = inPaperOrder(q.runs.map((r) => r.method), QUALITY_METHODS);
  const W = 420, H = 300, left = 44, right = 12, top = 24, bottom = 210;
  const x = (v: number) => left + v * (W - left - right), y = (v: number) => bottom - v * (bottom - top);
  const charts = tasks.map((t) => {
    const seed = Math.min(...q.runs.filter((r) => r.task === t && r.pr !== undefined).map((r) => r.seed));
    const grid = [0, 0.5, 1].map((v) => `<line x1="${left}" x2="${W - right}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="${left - 4}" y="${y(v) + 4}" font-size="10" text-anchor="end">${v}</text><text x="${x(v)}" y="${bottom + 14}" font-size="10" text-anchor="middle">${v}</text>`).join("");
    const paths: string[] = [], legend: string[] = [];
    methods.forEach((m, mi) => {
      const r = q.runs.find((u) => u.task === t && u.method === m && u.seed === seed && u.pr !== undefined);
      if (r === undefined) return;
      const { precision, recall } = r.pr!;
      paths.push(`<path class="pr" d="${recall.map((rc, i) => `${i === 0 ? "M" : "L"}${x(rc).toFixed(1)},${y(precision[i]).toFixed(1)}`).join("")}" fill="none" stroke="${COLORS[mi % COLORS.length]}" stroke-width="1.5"><title>${esc(m)}: AUPRC ${r.test.auprc?.toFixed(3) ?? "?"}</title></path>`);
      const k = legend.length;
      legend.push(`<rect x="${left + (k % 3) * 125}" y="${bottom + 28 + Math.floor(k / 3) * 14}" width="10" height="3" fill="${COLORS[mi % COLORS.length]}"/><text x="${left + 14 + (k % 3) * 125}" y="${bottom + 32 + Math.floor(k / 3) * 14}" font-size="10">${esc(`${m} (${r.test.auprc?.toFixed(2) ?? "?"})`)}</text>`);
    });
    return `<svg class="chart prc" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><text x="${left}" y="14" font-size="12" font-weight="bold">${esc(`${t}: precision (y) vs recall (x), seed ${seed}`)}</text>${grid}${paths.join("")}${legend.join("")}</svg>`;
  });
  return `<h2>Precision–recall on the safety tasks</h2><p>Test split; the legend gives each method's AUPRC.</p><div class="row">${charts.join("")}</div>`;
}

function costSection(c: CostResults): string {
  const rows = c.rows.map((r) => `<tr><td>${esc(r.setup)}</td><th>${esc(r.variant)}</th><td>${r.medianMs.toFixed(2)}</td><td>${r.p95Ms.toFixed(2)}</td><td>${r.ratio.toFixed(2)}</td><td>${r.pairedRatio?.toFixed(2) ?? "—"}</td></tr>`);
  const table = `<table class="cost"><thead><tr><th>setup</th><th>variant</th><th>median ms</th><th>p95 ms</th><th>ratio to base</th><th>paired ratio</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
  const max = Math.max(1, ...c.rows.map((r) => r.ratio)), W = 760, rowH = 22, left = 420;
  const x = (v: number) => left + (v / max) * (W - left - 50);
  const bars = c.rows.map((r, i) => `<text x="${left - 6}" y="${i * rowH + 15}" font-size="11" text-anchor="end">${esc(`${r.setup}: ${r.variant}`)}</text><rect class="bar" x="${left}" y="${i * rowH + 4}" width="${(x(r.ratio) - left).toFixed(1)}" height="14" fill="${r.variant.startsWith("guard") ? "#d62728" : r.variant.startsWith("base") ? "#7f7f7f" : "#1f77b4"}"/><text x="${x(r.ratio) + 4}" y="${i * rowH + 15}" font-size="11">${r.ratio.toFixed(2)}×</text>`);
  const one = `<line x1="${x(1)}" x2="${x(1)}" y1="0" y2="${c.rows.length * rowH + 4}" stroke="#000" stroke-dasharray="3 3"/>`;
  const chart = `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${c.rows.length * rowH + 8}">${bars.join("")}${one}</svg>`;
  const info = [c.machine !== undefined ? `machine: ${esc(c.machine)}` : "", c.samples !== undefined ? `${c.samples} prompts` : "", c.peakRssMiB !== undefined ? `process peak RSS ${c.peakRssMiB.toFixed(0)} MiB` : ""].filter(Boolean).join("; ");
  return `<h2>Cost per request (ratio of median ms to base)</h2><p>${info === "" ? "" : `${info}. `}Paper (Llama-3.2-3B, GPU): pooling 1.12, scoring 1.17, MHA 1.52; guard-then-serve 3.34–4.66.</p>${table}${chart}`;
}

/** Tags the page as onepass's, so that `onepass report --out` may replace it (and nothing else). */
export const EVAL_REPORT_MARKER = '<meta name="generator" content="onepass report">';

/** The whole page. */
export function evalReportHtml(results: { quality: QualityResults[]; cost: CostResults[] }, title = "onepass evaluation"): string {
  if (results.quality.length === 0 && results.cost.length === 0) throw new InvalidArgumentError("no results to report", { field: "RESULTS" });
  const body = [...results.quality.flatMap((q) => [qualitySection(q), layerSection(q), prSection(q)]), ...results.cost.map(costSection)].join("\n");
  return `<!doctype html><html><head><meta charset="utf-8">${EVAL_REPORT_MARKER}<title>${esc(title)}</title><style>
body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse;margin:8px 0 16px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{text-align:left}svg{display:block;margin:8px 0 24px}
.row{display:flex;flex-wrap:wrap;gap:12px}.row svg{margin:4px 0 16px}
</style></head><body><h1>${esc(title)}</h1>\n${body}\n</body></html>\n`;
}
