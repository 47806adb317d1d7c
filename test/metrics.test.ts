import { test } from "node:test";
import assert from "node:assert/strict";
import {
  accuracy, averagePrecision, binaryF1, chooseThreshold, classScores, confusionMatrix, ece, evaluate, macroF1, rocAuc,
} from "../src/probe/metrics.js";

const close = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) < tol, `${a} vs ${b}`);

test("accuracy, precision/recall/F1, macro-F1 and confusion matrix by hand", () => {
  const y = [0, 1, 1, 0, 1, 2];
  const p = [0, 1, 0, 1, 1, 1];
  close(accuracy(y, p), 3 / 6);
  // class 1: tp 2, fp 2 (rows 3, 5), fn 1 (row 2) → P 1/2, R 2/3, F1 4/7
  const s = classScores(y, p, 1);
  close(s.precision, 0.5);
  close(s.recall, 2 / 3);
  close(binaryF1(y, p), 4 / 7);
  // class 0: tp 1, fp 1, fn 1 → F1 1/2; class 2: tp 0 → 0
  close(macroF1(y, p, 3), (0.5 + 4 / 7 + 0) / 3);
  assert.deepEqual(confusionMatrix(y, p, 3), [[1, 1, 0], [1, 2, 0], [0, 1, 0]]);
});

test("AUPRC and ROC-AUC on scikit-learn's documented example", () => {
  // sklearn docs: average_precision_score → 0.83…, roc_auc_score → 0.75
  const y = [0, 0, 1, 1];
  const sc = [0.1, 0.4, 0.35, 0.8];
  close(averagePrecision(y, sc), 5 / 6);
  close(rocAuc(y, sc), 0.75);
  // ties count one half: one positive tied with one negative
  close(rocAuc([0, 1], [0.5, 0.5]), 0.5);
  close(rocAuc([0, 1, 1], [0.2, 0.9, 0.1]), 0.5);
});

test("ECE with 15 bins by hand", () => {
  // confidences 0.9 (correct), 0.9 (wrong), 0.6 (correct): bins (0.8667,0.9333] and (0.5333,0.6]
  const probs = [0.1, 0.9, 0.9, 0.1, 0.4, 0.6]; // [3, 2]
  const y = [1, 1, 1];
  // bin a: 2 items, acc 0.5, conf 0.9 → 2/3·0.4; bin b: 1 item, acc 1, conf 0.6 → 1/3·0.4
  close(ece(y, probs, 2), (2 / 3) * 0.4 + (1 / 3) * 0.4, 1e-9);
});

test("threshold chosen on validation: max F1 and target FPR", () => {
  const y = [0, 0, 0, 1, 1, 0, 1];
  const sc = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8];
  // thresholds 0.4 → tp 3 fp 1 → F1 6/7 (best); 0.6 → tp 2 fp 1 → 2/3
  close(chooseThreshold(y, sc), 0.4);
  // FPR ≤ 0: only 0.8 qualifies (0.7 is a negative)
  close(chooseThreshold(y, sc, { targetFpr: 0 }), 0.8);
  // FPR ≤ 0.25 (1 of 4 negatives): lowest threshold is 0.4
  close(chooseThreshold(y, sc, { targetFpr: 0.25 }), 0.4);
  const r = evaluate(y, sc.flatMap((s) => [1 - s, s]), 2, 0.4);
  close(r.f1!, 6 / 7);
  close(r.accuracy, 6 / 7);
});
