/**
 * What must hold in src/: no import cycle (found by madge, which resolves the TypeScript sources as tsc does,
 * type-only imports included) and no import from a lower layer into a higher one, with the layer order read
 * from layers.json — the one place it is written (README's Layout section repeats it, and is checked here).
 */
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import test from "node:test";
import madge from "madge";
import { tempDir } from "./helpers.js";

interface LayersFile {
  layers: string[][];
}

const LAYERS = (JSON.parse(readFileSync("layers.json", "utf8")) as LayersFile).layers;

/** The layer name of a path relative to src/: its first folder, or the file's stem for files at src/'s root. */
export function layerOf(file: string): string {
  const parts = file.split("/");
  return parts.length > 1 ? parts[0] : parts[0].replace(/\.ts$/, "");
}

/** Imports that point to a higher layer or sideways within a group, and files whose layer is not listed. */
export function layerViolations(graph: Record<string, string[]>, layers: string[][]): string[] {
  const rank = new Map<string, number>();
  layers.forEach((group, r) => group.forEach((name) => rank.set(name, r)));
  const out: string[] = [];
  for (const [from, deps] of Object.entries(graph)) {
    const a = layerOf(from);
    const ra = rank.get(a);
    if (ra === undefined) {
      out.push(`${from}: layer "${a}" is not in layers.json`);
      continue;
    }
    for (const to of deps) {
      const b = layerOf(to);
      if (b === a) continue;
      const rb = rank.get(b);
      if (rb === undefined) out.push(`${from} → ${to}: layer "${b}" is not in layers.json`);
      else if (rb > ra) out.push(`${from} → ${to}: ${a} is below ${b}`);
      else if (rb === ra) out.push(`${from} → ${to}: ${a} and ${b} are peers`);
    }
  }
  return out;
}

const MADGE_CONFIG = {
  fileExtensions: ["ts"],
  tsConfig: "tsconfig.json",
  // Type-only imports count: a plain value type imported from a higher layer is still a wall in the wrong place.
  detectiveOptions: { ts: { skipTypeImports: false }, es6: { skipTypeImports: false } },
};

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? tsFiles(p) : name.endsWith(".ts") ? [p] : [];
  });
}

test("src/ has no import cycle and every import points down the layers of layers.json", async () => {
  const result = await madge("src", MADGE_CONFIG);
  const graph = result.obj();
  // madge saw every source file and resolved every relative import (an unresolved one would hide an edge).
  assert.equal(Object.keys(graph).length, tsFiles("src").length);
  assert.deepEqual(result.warnings().skipped, []);
  assert.ok(graph["probe/live.ts"].includes("types/hidden.ts"), "type-only imports are part of the graph");
  assert.deepEqual(result.circular(), []);
  assert.deepEqual(layerViolations(graph, LAYERS), []);
});

test("the layer check fails on an upward import, a sideways import and an unlisted folder", () => {
  const graph = {
    "errors.ts": [],
    "types/hidden.ts": ["errors.ts", "engine/engine.ts"], // upward
    "util/atomic.ts": ["numeric/half.ts"], // peers in the bottom group
    "engine/engine.ts": ["types/hidden.ts", "model/load.ts"],
    "model/load.ts": ["errors.ts"],
    "attic/old.ts": ["errors.ts"], // a folder nobody placed
    "index.ts": ["engine/engine.ts", "probe/probe.ts"],
    "probe/probe.ts": ["cli/main.ts"], // upward
    "cli/main.ts": ["probe/probe.ts"],
  };
  assert.deepEqual(layerViolations(graph, LAYERS), [
    "types/hidden.ts → engine/engine.ts: types is below engine",
    "util/atomic.ts → numeric/half.ts: util and numeric are peers",
    'attic/old.ts: layer "attic" is not in layers.json',
    "probe/probe.ts → cli/main.ts: probe is below cli",
  ]);
});

test("madge, configured as above, finds a cycle through .js specifiers and type-only imports", async () => {
  const dir = tempDir("cycle");
  try {
    mkdirSync(join(dir, "src"));
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext" } }));
    writeFileSync(join(dir, "src/a.ts"), 'import { b } from "./b.js";\nexport const a = () => b;\n');
    writeFileSync(join(dir, "src/b.ts"), 'import type { C } from "./c.js";\nexport const b: C = 1;\n');
    writeFileSync(join(dir, "src/c.ts"), 'import { a } from "./a.js";\nexport type C = number;\nexport const c = a;\n');
    const result = await madge(join(dir, "src"), { ...MADGE_CONFIG, tsConfig: join(dir, "tsconfig.json") });
    assert.deepEqual(result.circular(), [["a.ts", "b.ts", "c.ts"]]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("README's Layout section states the same layer order as layers.json", () => {
  const readme = readFileSync("README.md", "utf8");
  const line = LAYERS.map((group) => group.join(", ")).join(" → ");
  assert.ok(readme.includes(line), `README.md should contain the layer order:\n${line}`);
});

test("onepass and onepass/testing: test scaffolding and the CLI progress bar are not in the main entry", async () => {
  // Through the package's own name, so package.json "exports" is what is checked.
  const main = (await import("onepass" as string)) as Record<string, unknown>;
  const testing = (await import("onepass/testing" as string)) as Record<string, unknown>;
  for (const name of ["writeRandomModel", "randomModelContents", "referenceForward", "ProgressBar"]) {
    assert.equal(main[name], undefined, name);
  }
  assert.equal(typeof testing.writeRandomModel, "function");
  assert.equal(typeof testing.referenceForward, "function");
  assert.equal(typeof main.Engine, "function");
});

test("every module that loads onnxruntime-node first loads util/ort-env (telemetry off unless opted in)", () => {
  const offenders: string[] = [];
  let checked = 0;
  for (const file of [...tsFiles("src"), ...tsFiles("bench"), ...tsFiles("test")]) {
    const text = readFileSync(file, "utf8");
    const ort = text.search(/^import [^\n]*["']onnxruntime-node["'];$/m);
    if (ort < 0) continue;
    checked++;
    const env = text.search(/^import ["'][./]*(src\/)?util\/ort-env\.js["'];/m);
    if (env < 0 || env > ort) offenders.push(file);
  }
  assert.ok(checked >= 10, `only ${checked} files import onnxruntime-node: the pattern no longer matches`);
  assert.deepEqual(offenders, []);
});
