// `onepass report` renders quality and cost results as one offline page; headless Chromium (Debian's
// chromium through playwright-core) opens it, counts what it drew, and saves a screenshot artifact.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import { tempDir } from "./helpers.js";

const CLI = "dist/src/cli/main.js";
const ARTIFACTS = "test-artifacts";

test("report: tables and SVG bars from quality + cost JSON, no network, rendered by headless Chromium", async () => {
  const dir = tempDir("report");
  try {
    const runs = [];
    for (const [method, base] of [["tfidf", 0.5], ["scoring", 0.6]] as const) { // file order unlike the paper's
      for (let seed = 0; seed < 3; seed++) {
        // the gate's layer weights (scoring only): class 1 looks at layer 2, class 0 at the embeddings
        const lw = method === "scoring" ? { layerWeights: { byClass: [[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1]], correct: [0.4, 0.1, 0.4, 0.1], incorrect: [0.25, 0.25, 0.25, 0.25], labelNames: ["safe", "toxic"] } } : {};
        const pr = { precision: [1, 0.8, 0.5, 0.2], recall: [0.1, 0.5, 0.8, 1] };
        runs.push({ task: "sst2", method, metric: "accuracy", seed, params: 10, test: { accuracy: base + seed * 0.01, f1: 0.1, auprc: 0.1 }, pr, ...lw }); // binary, reported on accuracy: no PR plot
        runs.push({ task: "toxicchat", method, seed, params: 10, test: { accuracy: 0.9, f1: base - 0.2, auprc: base - 0.1 }, pr, ...lw });
      }
    }
    writeFileSync(join(dir, "quality.json"), JSON.stringify({ runs, machine: "test", wallSeconds: 1 }));
    writeFileSync(join(dir, "cost.json"), JSON.stringify({ rows: [
      { setup: "m", variant: "base (prefill + 1 token)", medianMs: 10, p95Ms: 12, ratio: 1 },
      { setup: "m", variant: "+ scoring probe", medianMs: 11.7, p95Ms: 13, ratio: 1.17, pairedRatio: 1.08 },
      { setup: "m", variant: "guard-then-serve, equal", medianMs: 33, p95Ms: 40, ratio: 3.3 },
    ] }));
    const out = join(dir, "report.html");
    const r = spawnSync(process.execPath, [CLI, "report", join(dir, "quality.json"), join(dir, "cost.json"), "--out", out], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const html = readFileSync(out, "utf8");
    assert.doesNotMatch(html, /<script|<link|src=|url\(/); // self-contained: nothing to fetch
    // mean ± sample std of 0.60, 0.61, 0.62 = 0.610 ± 0.010
    assert.match(html, /0\.610 ± 0\.010/);

    const bad = spawnSync(process.execPath, [CLI, "report", join(dir, "report.html"), "--out", out], { encoding: "utf8" });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /report\.html: cannot read results/);

    const browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      const requests: string[] = [];
      page.on("request", (q) => { if (!q.url().startsWith("file:")) requests.push(q.url()); });
      await page.goto(pathToFileURL(resolve(out)).href);
      assert.equal(await page.locator("table.quality tbody tr").count(), 2); // one row per method
      // rows and columns in the paper's order, whatever order the results file holds them in
      assert.deepEqual(await page.locator("table.quality thead th").allTextContents(), ["method", "toxicchat F1", "toxicchat AUPRC", "sst2 acc"]);
      assert.deepEqual(await page.locator("table.quality tbody th").allTextContents(), ["scoring", "tfidf"]);
      assert.equal(await page.locator("table.cost tbody tr").count(), 3);
      // the paired ratio where the results have it (older cost.json files lack it)
      assert.deepEqual(await page.locator("table.cost tbody tr td:last-child").allTextContents(), ["—", "1.08", "—"]);
      // quality bars, layer analysis for sst2 and toxicchat, one PR plot (toxicchat: the only F1 task), cost bars
      assert.equal(await page.locator("svg.chart").count(), 5);
      assert.equal(await page.locator("svg.layers").count(), 2);
      assert.equal(await page.locator("svg.layers path.series").count(), 2 * 4); // 2 classes + correct + incorrect
      assert.equal(await page.locator("svg.prc").count(), 1);
      assert.equal(await page.locator("svg.prc path.pr").count(), 2); // one curve per method
      assert.equal(await page.locator("svg.prc path.pr title").first().textContent(), "scoring: AUPRC 0.500");
      // the toxic class's line peaks at layer 2: its highest point (smallest y) is the third vertex
      const d = (await page.locator("svg.layers").nth(1).locator("path.series").nth(1).getAttribute("d"))!;
      const ys = [...d.matchAll(/[ML][\d.]+,([\d.]+)/g)].map((m) => Number(m[1]));
      assert.equal(ys.indexOf(Math.min(...ys)), 2);
      assert.equal(await page.locator("svg.chart rect.bar").count(), 2 * 3 + 3); // 2 methods × 3 columns + 3 cost rows
      // the tallest quality bar is scoring's sst2 accuracy: drawn, with a real height
      const box = await page.locator("svg.chart").first().boundingBox();
      assert.ok(box !== null && box.width > 200 && box.height > 100);
      const bodyBox = (await page.locator("body").boundingBox())!;
      const bodyRight = bodyBox.x + bodyBox.width;
      assert.ok(box.x + box.width <= bodyRight + 1, `the quality chart (right edge ${box.x + box.width}) stays inside the page (${bodyRight})`);
      assert.deepEqual(requests, []);
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, "report.png"), fullPage: true });
    } finally {
      await browser.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
