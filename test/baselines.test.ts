// Baselines on synthetic data with known answers: MULI's sparse L1 fit, TF-IDF weights by hand, zero-shot
// prompting on the built-in model, and the logistic regression underneath them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { crossValidatedLambda, denseDesign, fitLogReg, predictLogReg } from "../src/probe/logreg.js";
import { bestFixedLayer } from "../src/baselines/fixed.js";
import { arraySource } from "../src/probe/train.js";
import { plantedTask } from "./probe-synthetic.js";
import { fitMuli, logSoftmaxRows, muliFeatures, predictMuli } from "../src/baselines/muli.js";
import { TfidfVectorizer, fitTfidf, ngrams, predictTfidf, tokenize } from "../src/baselines/tfidf.js";
import { promptScores } from "../src/baselines/prompting.js";
import { accuracy, argmaxRows } from "../src/probe/metrics.js";
import { Rng } from "../src/numeric/rng.js";
import { Engine } from "../src/engine/engine.js";
import { STORIES260K } from "./helpers.js";

test("logistic regression: L2 fit satisfies its optimality condition (gradient = 0) on a small problem", () => {
  const rng = new Rng(3);
  const N = 200, F = 5;
  const x = Float64Array.from({ length: N * F }, () => rng.normal()); // [N, F]
  const y = Int32Array.from({ length: N }, (_, i) => (x[i * F] + 0.5 * x[i * F + 1] + 0.3 * rng.normal() > 0 ? 1 : 0));
  const X = denseDesign(x, N, F);
  const lambda = 0.01;
  const m = fitLogReg(X, y, 2, { penalty: "l2", lambda, maxIter: 5000, tol: 1e-14 });
  const p = predictLogReg(X, m); // [N, 2]
  // ∂/∂W[f, c] = mean_i (p_ic − y_ic) x_if + λ W[f, c]
  for (let f = 0; f < F; f++) for (let c = 0; c < 2; c++) {
    let g = 0;
    for (let i = 0; i < N; i++) g += ((p[i * 2 + c] - (y[i] === c ? 1 : 0)) * x[i * F + f]) / N;
    g += lambda * m.W[f * 2 + c];
    assert.ok(Math.abs(g) < 1e-4, `gradient [${f}, ${c}] = ${g}`);
  }
});

test("cross-validated λ: the strongest penalty on labels that are noise, a weak one on a planted signal", () => {
  const rng = new Rng(11);
  const N = 600, F = 20;
  const x = Float32Array.from({ length: N * F }, () => rng.normal()); // [N, F]
  // labels independent of x: every fit only memorises noise, so held-out loss is lowest at the largest λ
  // (scoring the folds in-sample would pick the smallest)
  const noise = Int32Array.from({ length: N }, () => rng.int(2));
  const a = crossValidatedLambda(x, N, F, noise, 2, { folds: 5, seed: 0 });
  assert.equal(a.lambda, 0.1, JSON.stringify(a.path));
  // a strong planted signal on two features: little penalty is best
  const planted = Int32Array.from({ length: N }, (_, i) => (rng.next() < 1 / (1 + Math.exp(-(4 * x[i * F] - 3 * x[i * F + 1]))) ? 1 : 0));
  const b = crossValidatedLambda(x, N, F, planted, 2, { folds: 5, seed: 0 });
  assert.ok(b.lambda <= 3e-3, JSON.stringify(b.path));
  assert.ok(b.cvLoss < 0.45 && a.cvLoss > 0.68, `cv losses ${b.cvLoss} (signal) ${a.cvLoss} (noise)`);
  // each path entry is a mean over all N held-out rows: the chosen one is the minimum
  assert.equal(b.cvLoss, Math.min(...b.path.map((p) => p.cvLoss)));
});

test("best fixed layer: the layer that carries the label is chosen, by cross-validated loss", async () => {
  // the label lives in layer 2 at the first token; mean pooling over ≤ 10 tokens still sees it
  const task = plantedTask(300, { layers: 4, dim: 6, layer: 2, position: 0, mu: 3, seed: 4 });
  const r = await bestFixedLayer(arraySource(task.hidden, task.labels), "mean", { seed: 1 });
  assert.equal(r.layer, 2, JSON.stringify(r.layers));
  const chosen = r.layers[2].selectionLoss;
  for (const l of r.layers) if (l.layer !== 2) assert.ok(l.selectionLoss > chosen + 0.1, JSON.stringify(r.layers));
  assert.equal(chosen, r.best.cvLoss);
});

test("MULI recovers a planted sparse logistic model over the vocabulary and zeroes the rest", () => {
  const rng = new Rng(5);
  const V = 40, N = 1500, Nv = 500;
  const make = (n: number) => Float32Array.from({ length: n * V }, () => rng.normal() * 2); // logits [n, V]
  const trainLogits = make(N), valLogits = make(Nv);
  // plant: the label depends on the standardised log-probabilities of token ids 3 (+) and 17 (−) only
  const stats = { vocab: V, mean: new Float64Array(V), std: new Float64Array(V) };
  const lp = logSoftmaxRows(trainLogits, V);
  for (let k = 0; k < lp.length; k++) stats.mean[k % V] += lp[k] / N;
  for (let k = 0; k < lp.length; k++) stats.std[k % V] += (lp[k] - stats.mean[k % V]) ** 2 / N;
  for (let j = 0; j < V; j++) stats.std[j] = Math.sqrt(stats.std[j]) + 1e-6;
  const label = (logits: Float32Array, n: number) => {
    const f = muliFeatures(stats, logits);
    return Int32Array.from({ length: n }, (_, i) => (rng.next() < 1 / (1 + Math.exp(-(2.5 * f[i * V + 3] - 2.5 * f[i * V + 17]))) ? 1 : 0));
  };
  const yTrain = label(trainLogits, N), yVal = label(valLogits, Nv);
  const m = fitMuli(trainLogits, yTrain, valLogits, yVal, V, 2);
  const w = (j: number) => m.model.W[j * 2 + 1] - m.model.W[j * 2]; // log-odds weight of token j
  assert.ok(w(3) > 1, `w[3] = ${w(3)}`);
  assert.ok(w(17) < -1, `w[17] = ${w(17)}`);
  const others = Array.from({ length: V }, (_, j) => j).filter((j) => j !== 3 && j !== 17);
  const zero = others.filter((j) => m.model.W[j * 2] === 0 && m.model.W[j * 2 + 1] === 0).length;
  assert.ok(zero >= 0.8 * others.length, `${zero}/${others.length} other token ids have weight exactly 0`);
  const biggestOther = Math.max(...others.map((j) => Math.abs(w(j))));
  assert.ok(biggestOther < 0.25 * Math.min(w(3), -w(17)), `largest other weight ${biggestOther}`);
  const testLogits = make(500), yTest = label(testLogits, 500);
  assert.ok(accuracy(yTest, argmaxRows(predictMuli(m, testLogits), 2)) > 0.75);
});

test("TF-IDF matches hand-computed weights (scikit-learn's defaults) on a toy corpus", () => {
  assert.deepEqual(tokenize("The cat sat. A dog's tail!"), ["the", "cat", "sat", "dog", "tail"]); // ≥ 2 word chars
  assert.deepEqual(ngrams(["a1", "b2", "c3"]), ["a1", "b2", "c3", "a1 b2", "b2 c3"]);
  const v = new TfidfVectorizer().fit(["The cat sat.", "the dog sat", "the cat ran, the end"]);
  assert.deepEqual([...v.vocabulary.keys()], ["cat", "cat ran", "cat sat", "dog", "dog sat", "end", "ran", "ran the", "sat", "the", "the cat", "the dog", "the end"]);
  // idf = ln((1 + 3) / (1 + df)) + 1: "the" (df 3) → 1, "cat" (df 2) → 1.287682, "cat sat" (df 1) → 1.693147
  assert.ok(Math.abs(v.idf[v.vocabulary.get("the")!] - 1) < 1e-12);
  assert.ok(Math.abs(v.idf[v.vocabulary.get("cat")!] - 1.2876820724517808) < 1e-12);
  const m = v.transform(["The cat sat.", "the the zebra"]);
  const row0 = new Map<string, number>();
  const names = [...v.vocabulary.keys()];
  for (let k = m.indptr[0]; k < m.indptr[1]; k++) row0.set(names[m.indices[k]], m.values[k]);
  // counts 1 each × idf, L2-normalised over √(3·1.287682² + 1.693147² + 1²) = 2.973414
  const expected: Record<string, number> = { cat: 0.433067, "cat sat": 0.569431, sat: 0.433067, the: 0.336315, "the cat": 0.433067 };
  assert.deepEqual([...row0.keys()].sort(), Object.keys(expected).sort());
  for (const [t, w] of Object.entries(expected)) assert.ok(Math.abs(row0.get(t)! - w) < 1e-6, `${t}: ${row0.get(t)} vs ${w}`);
  // unknown n-grams are dropped: "the the zebra" keeps only "the" (count 2), normalised to 1
  assert.equal(m.indptr[2] - m.indptr[1], 1);
  assert.ok(Math.abs(m.values[m.indptr[1]] - 1) < 1e-12);
});

test("TF-IDF classifier learns which words carry the label", () => {
  const rng = new Rng(9);
  const pos = ["great", "lovely", "superb"], neg = ["awful", "boring", "dull"], filler = ["film", "plot", "actor", "scene", "story"];
  const make = (n: number) => {
    const texts: string[] = [], y: number[] = [];
    for (let i = 0; i < n; i++) {
      const c = i % 2;
      const words = Array.from({ length: 6 }, () => filler[rng.int(filler.length)]);
      words[rng.int(6)] = (c === 1 ? pos : neg)[rng.int(3)];
      texts.push(words.join(" "));
      y.push(c);
    }
    return { texts, y };
  };
  const tr = make(200), va = make(60), te = make(100);
  const m = fitTfidf(tr.texts, tr.y, va.texts, va.y, 2);
  assert.ok(accuracy(te.y, argmaxRows(predictTfidf(m, te.texts), 2)) >= 0.95);
});

test("zero-shot prompting picks the label whose word the model was made to prefer", async () => {
  // stories260K was trained on TinyStories: after "Once upon a" it prefers "time" over anything else.
  const engine = await Engine.load(STORIES260K);
  try {
    const s = await promptScores(engine, ["Once upon a", "Once upon a"], { labelWords: ["dog", "time"], template: "{text}" });
    assert.deepEqual(Array.from(argmaxRows(s, 2)), [1, 1]);
    assert.ok(s[1] > s[0] + 2, `log p(time) ${s[1]} vs log p(dog) ${s[0]}`);
    // the label order does not matter
    const r = await promptScores(engine, ["Once upon a"], { labelWords: ["time", "dog"], template: "{text}" });
    assert.equal(argmaxRows(r, 2)[0], 0);
    await assert.rejects(promptScores(engine, ["x"], { labelWords: ["time"] }), /at least two label words/);
  } finally {
    await engine.dispose();
  }
});
