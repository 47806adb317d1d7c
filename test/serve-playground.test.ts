// The playground page at `/`, in headless Chromium (Debian's chromium, driven by playwright-core): it streams an
// answer, shows every probe's label (the same as the API's for the same request) before the first token, the
// layer-weight chart and the timings, and a response probe's readings of the answer as it streams; a screenshot is
// saved under test-artifacts/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";
import { startServer } from "../src/serve/server.js";

const CHROMIUM = "/usr/bin/chromium";
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

test("playground: streams an answer and shows the probes' labels, layer weights, timings and response-probe readings", async () => {
  // the browser first: a launch that fails must not leave a listening server behind (the test file would never end)
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  // the built-in model and probes, as `onepass serve`, plus the sentiment probe reading the answer (annotate)
  const server = await startServer({ port: 0, responseProbes: [{ dir: "assets/probes/sentiment", name: "tone" }] }).catch(async (e: unknown) => {
    await browser.close();
    throw e;
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 860 } });
    const external: string[] = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(server.url)) external.push(r.url());
    });
    await page.goto(server.url + "/");
    await page.waitForSelector("body[data-state=idle]");
    const prompt = "Tell me a happy story about a dog.";
    await page.fill("#prompt", prompt);
    await page.fill("#max_tokens", "24");
    await page.click("#send");
    await page.waitForSelector("body[data-state=idle] #timings-table td", { timeout: 30_000 });
    await page.waitForFunction("document.body.dataset.firstTokenMs !== undefined", undefined, { timeout: 30_000 });

    const answer = (await page.textContent(".turn.assistant .text")) ?? "";
    assert.ok(answer.length > 0, "an answer was streamed");
    const labels = await page.$$eval("#probes .probe .label", (els) => els.map((e) => [e.getAttribute("data-probe"), e.textContent]));
    // the same request through the API gives the same labels and the same text
    const api = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: prompt }], max_tokens: 24, temperature: 0 }),
    }).then((r) => r.json() as Promise<{ choices: Array<{ message: { content: string } }>; classifications: Record<string, { label: string }>; response_classifications: Record<string, { label: string; tokens: number; history: Array<{ label: string; tokens: number }> }> }>);
    assert.deepEqual(Object.fromEntries(labels), Object.fromEntries(Object.entries(api.classifications).map(([k, v]) => [k, v.label])));
    assert.equal(answer, api.choices[0].message.content);
    // the response probe's final reading of the same answer, and its label history
    const tone = api.response_classifications.tone;
    assert.equal(await page.textContent("#rprobes .label[data-probe=tone]"), tone.label);
    assert.equal(await page.textContent("#rprobes .history"), "labels: " + tone.history.map((h) => `${h.label} @${h.tokens}`).join(" → "));
    assert.match((await page.textContent("#rprobes .probe")) ?? "", new RegExp(`after ${tone.tokens} tokens`));
    // one chart per scoring probe (both built-in probes are), one bar per layer 0..L
    const charts = await page.$$eval("#layers .layer-chart", (els) => els.map((e) => [e.getAttribute("data-probe"), e.querySelectorAll("svg rect").length]));
    assert.deepEqual(Object.fromEntries(charts), { sentiment: server.engine.spec.blocks + 1, safety: server.engine.spec.blocks + 1 });
    const cls = Number(await page.getAttribute("body", "data-classifications-ms"));
    const first = Number(await page.getAttribute("body", "data-first-token-ms"));
    assert.ok(cls > 0 && cls <= first, `labels at ${cls} ms, first token at ${first} ms`);
    assert.deepEqual(external, [], "the page loads nothing from elsewhere");
    mkdirSync("test-artifacts", { recursive: true });
    await page.screenshot({ path: "test-artifacts/playground.png", fullPage: true });
  } finally {
    await browser.close();
    await server.close();
  }
});
