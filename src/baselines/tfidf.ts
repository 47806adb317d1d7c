/**
 * The text-only baseline: TF-IDF over word 1–2-grams into an L2 logistic regression (λ on validation).
 * Conventions are scikit-learn's TfidfVectorizer defaults, so numbers can be checked against it: lower-case,
 * tokens = runs of two or more word characters (its token_pattern `(?u)\b\w\w+\b`), raw counts,
 * idf = ln((1 + n) / (1 + df)) + 1, rows L2-normalised, vocabulary sorted.
 * The tokeniser is that one regular expression: `natural` (the maintained NLP package that has one) prints
 * dotenv notices on stdout when imported, which a CLI cannot have.
 */
import { InvalidArgumentError } from "../errors.js";
import { csrDesign, fitLogRegPath, predictLogReg, type Csr, type LogRegModel } from "../probe/logreg.js";

const TOKEN = /\b\w\w+\b/gu;

export function tokenize(text: string): string[] {
  return text.toLowerCase().match(TOKEN) ?? [];
}

/** The n-grams of tokens for n in [1, maxN], joined by a space (scikit-learn's ngram_range=(1, maxN)). */
export function ngrams(tokens: readonly string[], maxN = 2): string[] {
  const out: string[] = [];
  for (let n = 1; n <= maxN; n++) for (let i = 0; i + n <= tokens.length; i++) out.push(tokens.slice(i, i + n).join(" "));
  return out;
}

export class TfidfVectorizer {
  /** term → column */
  readonly vocabulary = new Map<string, number>();
  /** [F] */
  idf = new Float64Array(0);
  constructor(readonly maxN = 2) {}

  fit(texts: readonly string[]): this {
    if (texts.length === 0) throw new InvalidArgumentError("no texts to fit TF-IDF on", { field: "texts" });
    const df = new Map<string, number>();
    for (const t of texts) for (const g of new Set(ngrams(tokenize(t), this.maxN))) df.set(g, (df.get(g) ?? 0) + 1);
    const terms = [...df.keys()].sort();
    this.vocabulary.clear();
    terms.forEach((g, i) => this.vocabulary.set(g, i));
    this.idf = Float64Array.from(terms, (g) => Math.log((1 + texts.length) / (1 + df.get(g)!)) + 1);
    return this;
  }

  /** TF-IDF rows [N, F] as CSR (unknown n-grams are dropped; an empty text is an all-zero row). */
  transform(texts: readonly string[]): Csr {
    const indptr = new Int32Array(texts.length + 1); // [N + 1]
    const idx: number[] = [], val: number[] = [];
    texts.forEach((t, i) => {
      const counts = new Map<number, number>();
      for (const g of ngrams(tokenize(t), this.maxN)) {
        const f = this.vocabulary.get(g);
        if (f !== undefined) counts.set(f, (counts.get(f) ?? 0) + 1);
      }
      const cols = [...counts.keys()].sort((a, b) => a - b);
      const w = cols.map((f) => counts.get(f)! * this.idf[f]);
      const norm = Math.sqrt(w.reduce((a, v) => a + v * v, 0)) || 1;
      cols.forEach((f, k) => { idx.push(f); val.push(w[k] / norm); });
      indptr[i + 1] = idx.length;
    });
    return { indptr, indices: Int32Array.from(idx), values: Float64Array.from(val), cols: this.vocabulary.size };
  }
}

export interface TfidfClassifier {
  vectorizer: TfidfVectorizer;
  model: LogRegModel;
  path: { lambda: number; valLoss: number; nonZero: number }[];
}

/** Fits the vectorizer on the training texts and the L2 logistic regression, λ on validation log-loss. */
export function fitTfidf(train: readonly string[], yTrain: ArrayLike<number>, val: readonly string[], yVal: ArrayLike<number>, C: number): TfidfClassifier {
  const vectorizer = new TfidfVectorizer().fit(train);
  const { model, path } = fitLogRegPath(csrDesign(vectorizer.transform(train)), yTrain, csrDesign(vectorizer.transform(val)), yVal, C, { penalty: "l2" });
  return { vectorizer, model, path };
}

/** Class probabilities [N, C]. */
export function predictTfidf(m: TfidfClassifier, texts: readonly string[]): Float32Array {
  return predictLogReg(csrDesign(m.vectorizer.transform(texts)), m.model);
}
