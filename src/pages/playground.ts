/**
 * The playground page the server shows at `/`: one self-contained HTML document (inline CSS, JS and SVG, no
 * CDN, works offline). It streams a chat or completion from the server's own OpenAI endpoints, shows each
 * probe's label and class probabilities from the first stream chunk (sent after prefill, before any token),
 * a bar chart of the scoring probe's layer weights, and the request's timings; response probes' readings of the
 * answer update as it streams (the server sends one when a label changes, and the final ones on the last chunk).
 */

export interface PlaygroundInfo {
  model: string;
  needsKey: boolean;
  probes: Array<{ name: string; labels: string[]; policy: "annotate" | "block"; flags: string[]; kind: string }>;
  /** Response probes (read the answer token by token). */
  responseProbes?: Array<{ name: string; labels: string[]; policy: "annotate" | "block"; flags: string[]; kind: string }>;
}

/** JSON that is safe inside a <script> element. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026");
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

const CSS = `
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2430}
header{background:#1d2430;color:#fff;padding:10px 18px;display:flex;gap:16px;align-items:baseline}header h1{font-size:18px;margin:0}
header span{opacity:.75}main{display:grid;grid-template-columns:minmax(320px,1fr) minmax(320px,1fr);gap:16px;padding:16px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 14px}h2{font-size:14px;margin:0 0 8px;text-transform:uppercase;letter-spacing:.04em;color:#5a6473}
textarea,input,select{font:inherit;border:1px solid #c5cbd3;border-radius:5px;padding:6px 8px;width:100%}textarea{min-height:84px;resize:vertical}
.row{display:flex;gap:8px;margin:8px 0;align-items:center}.row label{flex:1;font-size:12px;color:#5a6473}.row label input,.row label select{margin-top:2px}
button{font:inherit;background:#2f6fed;color:#fff;border:0;border-radius:5px;padding:7px 16px;cursor:pointer}button:disabled{background:#9bb5ee}button.secondary{background:#e8ebf0;color:#1d2430}
#transcript{white-space:pre-wrap;min-height:120px;max-height:420px;overflow:auto;background:#fbfbfc;border:1px solid #eceef2;border-radius:5px;padding:8px}
.turn{margin:0 0 8px}.turn b{color:#5a6473;font-weight:600;margin-right:4px}.turn.assistant .text{color:#0f3d91}
.probe{border:1px solid #eceef2;border-radius:6px;padding:8px;margin:0 0 8px}.probe .name{font-weight:600}.badge{display:inline-block;border-radius:10px;padding:0 8px;margin-left:6px;font-size:12px;background:#e8ebf0}
.badge.flagged{background:#ffe3b3}.badge.blocked{background:#ffc9c9}.bar{display:flex;align-items:center;gap:6px;font-size:12px;margin:2px 0}.bar .lab{width:90px;overflow:hidden;text-overflow:ellipsis}
.bar .track{flex:1;height:10px;background:#eceef2;border-radius:5px;overflow:hidden}.bar .fill{height:100%;background:#2f6fed}.bar .fill.win{background:#12a150}
table{border-collapse:collapse;width:100%;font-size:13px}td{padding:2px 4px;border-bottom:1px solid #f0f1f4}td:last-child{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#8a93a0;font-size:12px}#error{color:#b42318;white-space:pre-wrap}
`;

/** The page's script: plain browser JS (it runs in the page, not in Node). */
const SCRIPT = `
const INFO = JSON.parse(document.getElementById("info").textContent);
const $ = (id) => document.getElementById(id);
let history = [];
let busy = false;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
}
function svgEl(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function renderTranscript(pending) {
  const t = $("transcript");
  t.textContent = "";
  for (const m of history) t.append(el("div", { class: "turn " + m.role }, el("b", {}, m.role + ":"), el("span", { class: "text" }, m.content)));
  if (pending !== undefined) {
    const span = el("span", { class: "text", id: "live" }, pending);
    t.append(el("div", { class: "turn assistant" }, el("b", {}, "assistant:"), span));
  }
  t.scrollTop = t.scrollHeight;
}

/** One card per probe: label, badges, a bar per class. \`response\`: a response probe's reading of the answer so far. */
function probeCards(box, cls, response) {
  box.textContent = "";
  for (const [name, c] of Object.entries(cls)) {
    const head = el("div", {}, el("span", { class: "name" }, name + ": "), el("span", { class: "label", "data-probe": name }, c.label));
    if (c.blocked) head.append(el("span", { class: "badge blocked" }, response ? "stopped the answer" : "blocked"));
    else if (c.flagged) head.append(el("span", { class: "badge flagged" }, "flagged"));
    head.append(el("span", { class: "muted" }, response ? "  after " + c.tokens + " tokens, " + c.probe_ms.toFixed(2) + " ms" : "  " + c.probe_ms.toFixed(2) + " ms"));
    const card = el("div", { class: "probe" }, head);
    for (const [label, p] of Object.entries(c.probabilities)) {
      const fill = el("div", { class: "fill" + (label === c.label ? " win" : ""), style: "width:" + (100 * p).toFixed(1) + "%" });
      card.append(el("div", { class: "bar" }, el("span", { class: "lab" }, label), el("div", { class: "track" }, fill), el("span", {}, p.toFixed(3))));
    }
    if (c.threshold !== null && c.threshold !== undefined) card.append(el("div", { class: "muted" }, "threshold " + c.threshold.toFixed(3)));
    if (response && c.history) card.append(el("div", { class: "muted history" }, "labels: " + c.history.map((h) => h.label + " @" + h.tokens).join(" → ")));
    box.append(card);
  }
}

function renderProbes(cls) {
  probeCards($("probes"), cls, false);
  $("layers").textContent = "";
  const scoring = Object.entries(cls).filter(([, c]) => Array.isArray(c.layer_weights));
  if (scoring.length === 0) $("layers").append(el("div", { class: "muted" }, "no scoring probe on this request"));
  for (const [name, c] of scoring) renderLayers(name, c.layer_weights);
}

/** Bar chart (inline SVG) of a scoring probe's softmax weights over layers 0..L. */
function renderLayers(name, w) {
  const box = el("div", { class: "layer-chart", "data-probe": name });
  $("layers").append(box);
  const W = 420, H = 160, pad = 24, bw = (W - 2 * pad) / w.length, max = Math.max(...w, 1e-9);
  const svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, width: "100%", role: "img", "aria-label": "layer weights of " + name });
  svg.append(svgEl("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, stroke: "#8a93a0" }));
  w.forEach((v, i) => {
    const h = (H - 2 * pad) * (v / max);
    const r = svgEl("rect", { x: pad + i * bw + 2, y: H - pad - h, width: Math.max(1, bw - 4), height: h, fill: "#2f6fed" });
    const title = svgEl("title", {}); title.textContent = "layer " + i + ": " + v.toFixed(4); r.append(title);
    svg.append(r);
    const tx = svgEl("text", { x: pad + (i + 0.5) * bw, y: H - pad + 14, "text-anchor": "middle", "font-size": 11, fill: "#5a6473" });
    tx.textContent = String(i);
    svg.append(tx);
    const tv = svgEl("text", { x: pad + (i + 0.5) * bw, y: H - pad - h - 4, "text-anchor": "middle", "font-size": 10, fill: "#1d2430" });
    tv.textContent = v.toFixed(2);
    svg.append(tv);
  });
  box.append(el("div", { class: "muted" }, name + ": weight of each layer (0 = embeddings)"), svg);
}

function renderTimings(t, client) {
  const rows = [
    ["queue", t && t.queue_ms], ["prefill", t && t.prefill_ms], ["probes", t && t.probe_ms], ["decode", t && t.decode_ms],
    ["classifications after", client.classifications], ["first token after", client.firstToken], ["total", t ? t.total_ms : client.total],
  ];
  const tb = el("table", { id: "timings-table" });
  for (const [k, v] of rows) tb.append(el("tr", {}, el("td", {}, k), el("td", {}, v === null || v === undefined ? "–" : v.toFixed(1) + " ms")));
  if (t) tb.append(el("tr", {}, el("td", {}, "decode speed"), el("td", {}, t.decode_tokens_per_s.toFixed(1) + " tok/s")));
  $("timings").textContent = "";
  $("timings").append(tb);
}

async function send() {
  if (busy) return;
  const text = $("prompt").value;
  const mode = $("mode").value;
  $("error").textContent = "";
  busy = true; $("send").disabled = true;
  const body = {
    model: INFO.model, stream: true, stream_options: { include_usage: true },
    max_tokens: Number($("max_tokens").value), temperature: Number($("temperature").value),
    onepass: { layer_weights: true },
  };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  let url;
  if (mode === "chat") {
    history.push({ role: "user", content: text });
    const sys = $("system").value;
    body.messages = (sys ? [{ role: "system", content: sys }] : []).concat(history);
    url = "/v1/chat/completions";
  } else {
    history = [{ role: "user", content: text }];
    body.prompt = text;
    url = "/v1/completions";
  }
  renderTranscript("");
  $("probes").textContent = ""; $("layers").textContent = ""; $("rprobes").textContent = "";
  let readings = {};
  const headers = { "content-type": "application/json" };
  if ($("key") && $("key").value) headers.authorization = "Bearer " + $("key").value;
  const t0 = performance.now();
  const client = { classifications: null, firstToken: null, total: null };
  let answer = "", timings = null, finish = null;
  try {
    const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
    if (!res.ok) { const e = await res.json().catch(() => ({})); throw new Error((e.error && e.error.message) || res.statusText); }
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\\n\\n")) >= 0) {
        const line = buf.slice(0, i).trim(); buf = buf.slice(i + 2);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const ev = JSON.parse(data);
        if (ev.error) throw new Error(ev.error.message);
        if (ev.classifications) { client.classifications = performance.now() - t0; renderProbes(ev.classifications); }
        if (ev.response_classifications) { readings = Object.assign({}, readings, ev.response_classifications); probeCards($("rprobes"), readings, true); }
        if (ev.timings) timings = ev.timings;
        const ch = ev.choices && ev.choices[0];
        if (!ch) continue;
        const piece = mode === "chat" ? (ch.delta && ch.delta.content) || "" : ch.text || "";
        if (piece) { if (client.firstToken === null) client.firstToken = performance.now() - t0; answer += piece; $("live").textContent = answer; }
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
    client.total = performance.now() - t0;
    history.push({ role: "assistant", content: answer });
    renderTranscript();
    $("finish").textContent = finish ? "finish_reason: " + finish : "";
    renderTimings(timings, client);
    // for automated checks: when the labels and the first token arrived, ms after sending
    document.body.dataset.classificationsMs = client.classifications === null ? "" : client.classifications.toFixed(1);
    document.body.dataset.firstTokenMs = client.firstToken === null ? "" : client.firstToken.toFixed(1);
  } catch (err) {
    $("error").textContent = String(err.message || err);
    if (mode === "chat") history.pop();
  } finally {
    busy = false; $("send").disabled = false;
    document.body.setAttribute("data-state", "idle");
  }
}

$("send").addEventListener("click", () => { document.body.setAttribute("data-state", "busy"); send(); });
$("clear").addEventListener("click", () => { history = []; renderTranscript(); $("probes").textContent = ""; $("rprobes").textContent = ""; $("layers").textContent = ""; $("timings").textContent = ""; $("finish").textContent = ""; });
$("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("send").click(); });
$("mode").addEventListener("change", () => { $("system-row").style.display = $("mode").value === "chat" ? "" : "none"; });
const list = $("probe-list");
for (const p of INFO.probes) list.append(el("li", {}, p.name + " (" + p.kind + "; " + p.labels.join(" / ") + "; " + p.policy + (p.flags.length ? " " + p.flags.join(",") : "") + ")"));
if (INFO.probes.length === 0) list.append(el("li", {}, "no probes loaded"));
const rlist = $("rprobe-list");
for (const p of INFO.responseProbes || []) rlist.append(el("li", {}, p.name + " (" + p.kind + "; " + p.labels.join(" / ") + "; " + p.policy + (p.flags.length ? " " + p.flags.join(",") : "") + ")"));
if (!INFO.responseProbes || INFO.responseProbes.length === 0) $("rsection").style.display = "none";
renderTimings(null, {});
document.body.setAttribute("data-state", "idle");
`;

export function renderPlayground(info: PlaygroundInfo): string {
  const keyRow = info.needsKey ? `<div class="row"><label>API key<input id="key" type="password" autocomplete="off"></label></div>` : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>onepass playground · ${escapeHtml(info.model)}</title><style>${CSS}</style></head>
<body data-state="loading">
<header><h1>onepass playground</h1><span>model ${escapeHtml(info.model)} · answer and classifications from one forward pass</span></header>
<main>
<section>
<h2>Prompt</h2>
<div class="row"><label>mode<select id="mode"><option value="chat">chat</option><option value="completion">completion</option></select></label>
<label>max tokens<input id="max_tokens" type="number" min="1" value="48"></label>
<label>temperature<input id="temperature" type="number" min="0" max="2" step="0.1" value="0"></label>
<label>seed<input id="seed" type="number" placeholder="none"></label></div>
<div class="row" id="system-row"><label>system message (optional)<input id="system" type="text"></label></div>
${keyRow}
<textarea id="prompt" placeholder="Type a prompt (Ctrl+Enter sends)">Once upon a time, there was a little dog who</textarea>
<div class="row"><button id="send">Send</button><button id="clear" class="secondary">Clear chat</button><span id="finish" class="muted"></span></div>
<div id="error"></div>
<h2>Conversation</h2>
<div id="transcript"></div>
</section>
<section>
<h2>Probes <span class="muted">(shown when prefill ends, before the first token)</span></h2>
<ul id="probe-list" class="muted"></ul>
<div id="probes"></div>
<div id="rsection"><h2>Response probes <span class="muted">(read the answer token by token)</span></h2>
<ul id="rprobe-list" class="muted"></ul>
<div id="rprobes"></div></div>
<h2>Layer weights</h2>
<div id="layers"></div>
<h2>Timings</h2>
<div id="timings"></div>
</section>
</main>
<script type="application/json" id="info">${scriptJson(info)}</script>
<script>${SCRIPT}</script>
</body></html>
`;
}
