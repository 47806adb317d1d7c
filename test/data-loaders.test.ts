import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DatasetError } from "../src/errors.js";
import { DATASET_PRESETS, loadDataset, loadDatasetArg, loadPreset, resolveDataDir } from "../src/data/datasets.js";
import { tempDir } from "./helpers.js";

const FIX = "test/fixtures/palma2025";

function withTmp(fn: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = tempDir("data");
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

/** Asserts a DatasetError whose message/fields name the file, the line/row and the field. */
async function rejectsNaming(p: Promise<unknown>, file: string, where: string | undefined, field: string | undefined): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DatasetError, `not a DatasetError: ${String(e)}`);
    assert.equal(e.file, file);
    assert.ok(e.message.includes(file), e.message);
    if (where !== undefined) assert.ok(e.message.includes(where), `${e.message} should name ${where}`);
    if (field !== undefined) assert.equal(e.field, field);
    return true;
  });
}

test("palma2025 SST-2 CSVs: row and label counts as published in SOURCES.md", async () => {
  const train = await loadDataset({ files: [{ path: `${FIX}/sst2_train.csv` }], labelNames: ["negative", "positive"] });
  assert.equal(train.examples.length, 6920);
  assert.equal(train.examples.filter((e) => e.label === 0).length, 3310);
  assert.equal(train.examples.filter((e) => e.label === 1).length, 3610);
  const test_ = await loadDataset({ files: [{ path: `${FIX}/sst2_test.csv` }] });
  assert.equal(test_.examples.length, 1821);
  assert.equal(test_.examples.filter((e) => e.label === 0).length, 912);
  assert.deepEqual(test_.labelNames, ["0", "1"]);
  // First rows as in the file (one quoted with commas inside, one unquoted).
  assert.deepEqual(test_.examples[0], { text: "no movement , no yuks , not much of anything .", label: 0 });
  assert.deepEqual(test_.examples[4], { text: "this is one of polanski 's best films .", label: 1 });
  assert.equal(test_.examples.at(-1)!.text, "but here 's the real damn : it is n't funny , either .");
  const limited = await loadDataset({ files: [{ path: `${FIX}/sst2_test.csv` }], limit: 5 });
  assert.equal(limited.examples.length, 5);
});

test("RFC 4180 CSV: quotes, doubled quotes, embedded newlines and commas, CRLF, BOM, empty fields", withTmp(async (dir) => {
  const f = join(dir, "q.csv");
  writeFileSync(f, '\ufefftext,label,note\r\n"multi\r\nline, with ""quotes""",pos,\r\nplain text,neg,x\r\n"",neg,"a,b"\r\n\r\n"last, no newline",pos,""');
  const ds = await loadDataset({ files: [{ path: f }] });
  assert.deepEqual(ds.examples.map((e) => e.text), ['multi\r\nline, with "quotes"', "plain text", "", "last, no newline"]);
  assert.deepEqual(ds.labelNames, ["neg", "pos"]); // open vocabulary: sorted names
  assert.deepEqual(ds.examples.map((e) => e.label), [1, 0, 0, 1]);
}));

test("CSV errors name file, line and field", withTmp(async (dir) => {
  const unterminated = join(dir, "u.csv");
  writeFileSync(unterminated, 'text,label\nok,1\n"never closed,0\nmore,1\n');
  await rejectsNaming(loadDataset({ files: [{ path: unterminated }] }), unterminated, "line 3", undefined);
  const ragged = join(dir, "r.csv");
  writeFileSync(ragged, "text,label\na,1\nb,1,extra\n");
  await rejectsNaming(loadDataset({ files: [{ path: ragged }] }), ragged, "line 3", undefined);
  const multi = join(dir, "m.csv");
  writeFileSync(multi, 'text,label\n"two\nlines",1\nthird,\n');
  await rejectsNaming(loadDataset({ files: [{ path: multi }] }), multi, "line 4", "label"); // the row after the 2-line field
  const badLabel = join(dir, "b.csv");
  writeFileSync(badLabel, "text,label\na,positive\nb,neutral\n");
  await rejectsNaming(loadDataset({ files: [{ path: badLabel }], labelNames: ["negative", "positive"] }), badLabel, "line 3", "label");
  await rejectsNaming(loadDataset({ files: [{ path: badLabel }], textField: "sentence" }), badLabel, "line 2", "sentence");
  const outOfRange = join(dir, "o.csv");
  writeFileSync(outOfRange, "text,label\na,0\nb,2\n");
  await rejectsNaming(loadDataset({ files: [{ path: outOfRange }], labelNames: ["x", "y"] }), outOfRange, "line 3", "label");
}));

test("JSONL with dotted fields, filters and label maps; bad line named", withTmp(async (dir) => {
  const f = join(dir, "d.jsonl");
  writeFileSync(
    f,
    [
      '{"text":"a","meta":{"y":"harmful"},"split":"train"}',
      "",
      '{"text":"b","meta":{"y":"safe"},"split":"test"}',
      '{"text":"c","meta":{"y":"safe"},"split":"train"}',
      '{"text":"d","meta":{"y":null},"split":"train"}',
    ].join("\n") + "\n",
  );
  const ds = await loadDataset({ files: [{ path: f }], labelField: "meta.y", labelMap: { safe: 0, harmful: 1 }, where: { split: "train" }, dropMissingLabels: true });
  assert.deepEqual(ds.examples, [{ text: "a", label: 1 }, { text: "c", label: 0 }]);
  assert.deepEqual(ds.labelNames, ["safe", "harmful"]);
  await rejectsNaming(loadDataset({ files: [{ path: f }], labelField: "meta.y" }), f, "line 5", "meta.y");
  const bad = join(dir, "bad.jsonl");
  writeFileSync(bad, '{"text":"a","label":0}\n{"text":"b","label":1\n');
  await rejectsNaming(loadDataset({ files: [{ path: bad }] }), bad, "line 2", undefined);
}));

test("GLUE TSV is QUOTE_NONE: quotes are literal, trailing spaces kept", withTmp(async (dir) => {
  const f = join(dir, "train.tsv");
  writeFileSync(f, 'sentence\tlabel\nhide new secretions from the parental units \t0\n"quoted" at the start , really \t1\n');
  const ds = await loadDataset({ files: [{ path: f }], textField: "sentence", labelNames: ["negative", "positive"] });
  assert.deepEqual(ds.examples, [
    { text: "hide new secretions from the parental units ", label: 0 },
    { text: '"quoted" at the start , really ', label: 1 },
  ]);
  const ragged = join(dir, "r.tsv");
  writeFileSync(ragged, "sentence\tlabel\none\ttwo\tthree\n");
  await rejectsNaming(loadDataset({ files: [{ path: ragged }] }), ragged, "line 2", undefined);
}));

test("text;label files (dair-ai emotion with header): label after the last ';'", withTmp(async (dir) => {
  const f = join(dir, "train.txt");
  writeFileSync(f, "text;label_name\ni didnt feel humiliated;sadness\ni feel; oddly joyful;joy\n");
  const ds = await loadDataset({ files: [{ path: f }], labelNames: ["sadness", "joy", "love", "anger", "fear", "surprise"] });
  assert.deepEqual(ds.examples, [{ text: "i didnt feel humiliated", label: 0 }, { text: "i feel; oddly joyful", label: 1 }]);
  const bad = join(dir, "bad.txt");
  writeFileSync(bad, "text;label_name\nok;joy\nno separator here\n");
  await rejectsNaming(loadDataset({ files: [{ path: bad }] }), bad, "line 3", "label");
}));

test("JSON: arrays, JUDGE-BENCH instances[] with nested string labels, constant labels per file", withTmp(async (dir) => {
  const jb = join(dir, "toxic.json");
  writeFileSync(
    jb,
    JSON.stringify({
      dataset: "ToxicChat",
      instances: [
        { id: "1", instance: "hello", annotations: { toxicity: { majority_human: "0" } } },
        { id: "2", instance: "nasty", annotations: { toxicity: { majority_human: "1" } } },
        { id: "3", instance: "broken", annotations: { jailbreaking: { majority_human: "0" } } },
      ],
    }),
  );
  const opts = { textField: "instance", labelField: "annotations.toxicity.majority_human", labelNames: ["non-toxic", "toxic"] };
  await rejectsNaming(loadDataset({ files: [{ path: jb }], ...opts }), jb, "row 2", "annotations.toxicity.majority_human");
  const ok = await loadDataset({ files: [{ path: jb }], ...opts, limit: 2 });
  assert.deepEqual(ok.examples, [{ text: "hello", label: 0 }, { text: "nasty", label: 1 }]);
  const harmful = join(dir, "harmful.json");
  const harmless = join(dir, "harmless.json");
  writeFileSync(harmful, JSON.stringify([{ instruction: "do harm", category: null }]));
  writeFileSync(harmless, JSON.stringify([{ instruction: "bake a cake", category: null }, { instruction: "sing", category: null }]));
  const both = await loadDataset({
    files: [{ path: harmless, constantLabel: 0 }, { path: harmful, constantLabel: 1 }],
    textField: "instruction",
    labelNames: ["harmless", "harmful"],
  });
  assert.deepEqual(both.examples.map((e) => [e.text, e.label]), [["bake a cake", 0], ["sing", 0], ["do harm", 1]]);
  const notList = join(dir, "obj.json");
  writeFileSync(notList, JSON.stringify({ rows: [] }));
  await rejectsNaming(loadDataset({ files: [{ path: notList }] }), notList, undefined, "instances");
  const notJson = join(dir, "broken.json");
  writeFileSync(notJson, "[{");
  await rejectsNaming(loadDataset({ files: [{ path: notJson }] }), notJson, "invalid JSON", undefined);
}));

test("parquet (hyparquet): strings, nulls dropped, text template over two columns", withTmp(async (dir) => {
  const { parquetWriteBuffer } = await import("hyparquet-writer");
  const f = join(dir, "wg.parquet");
  const buf = parquetWriteBuffer({
    columnData: [
      { name: "prompt", data: ["how do I bake bread?", "how do I hurt someone?", "unlabelled one"], type: "STRING" },
      { name: "response", data: ["Knead it.", null, "ok"], type: "STRING" },
      { name: "prompt_harm_label", data: ["unharmful", "harmful", null], type: "STRING" },
    ],
  });
  writeFileSync(f, new Uint8Array(buf));
  const ds = await loadDataset({ files: [{ path: f }], textField: "prompt", labelField: "prompt_harm_label", labelNames: ["unharmful", "harmful"], dropMissingLabels: true });
  assert.deepEqual(ds.examples, [{ text: "how do I bake bread?", label: 0 }, { text: "how do I hurt someone?", label: 1 }]);
  const tpl = await loadDataset({ files: [{ path: f }], textTemplate: "U: {prompt} A: {response}", labelField: "prompt_harm_label", dropMissingLabels: true });
  assert.deepEqual(tpl.examples.map((e) => e.text), ["U: how do I bake bread? A: Knead it.", "U: how do I hurt someone? A: None"]);
  await rejectsNaming(loadDataset({ files: [{ path: f }], textField: "prompt", labelField: "prompt_harm_label" }), f, "row 2", "prompt_harm_label");
  await rejectsNaming(loadDataset({ files: [{ path: f }], textField: "question", labelField: "prompt_harm_label" }), f, "row 0", "question");
  const junk = join(dir, "junk.parquet");
  writeFileSync(junk, "PAR1 this is not parquet at all PAR1");
  await rejectsNaming(loadDataset({ files: [{ path: junk }] }), junk, "parquet", undefined);
}));

test("presets resolve under the data dir (argument or ONEPASS_DATA_DIR); unknown names/splits are DatasetErrors", withTmp(async (dir) => {
  mkdirSync(join(dir, "palma2025"));
  copyFileSync(`${FIX}/sst2_test.csv`, join(dir, "palma2025/sst2_test.csv"));
  const ds = await loadPreset("sst2", { split: "test", dataDir: dir });
  assert.equal(ds.examples.length, 1821);
  assert.deepEqual(ds.labelNames, ["negative", "positive"]);
  assert.equal(ds.split, "test");
  const saved = process.env.ONEPASS_DATA_DIR;
  process.env.ONEPASS_DATA_DIR = dir;
  try {
    assert.equal(resolveDataDir(), dir);
    const viaArg = await loadDatasetArg("sst2", { split: "test", limit: 3 });
    assert.equal(viaArg.examples.length, 3);
  } finally {
    if (saved === undefined) delete process.env.ONEPASS_DATA_DIR;
    else process.env.ONEPASS_DATA_DIR = saved;
  }
  await rejectsNaming(loadPreset("sst2", { split: "train", dataDir: dir }), join(dir, "palma2025/sst2_train.csv"), "not found", undefined);
  await assert.rejects(loadPreset("sst2", { split: "validation", dataDir: dir }), (e: unknown) => e instanceof DatasetError && e.field === "split" && /train, test/.test(e.message));
  await assert.rejects(loadPreset("no-such-set", { dataDir: dir }), DatasetError);
  await assert.rejects(loadDatasetArg(join(dir, "missing.csv")), DatasetError);
  // Every preset names only files under the data dir, none under a holdout folder.
  for (const p of Object.values(DATASET_PRESETS)) {
    for (const parts of Object.values(p.splits)) for (const part of parts) assert.ok(!part.path.includes("holdout") && !part.path.startsWith(".."), part.path);
  }
}));
