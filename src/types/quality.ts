/**
 * The quality table's rows (methods) and columns (tasks) in the paper's order, shared by the benchmark's
 * Markdown table and the report page so that both read the same way.
 */
export const QUALITY_METHODS = ["pooling", "scoring", "mha", "fixed-last", "fixed-mean", "muli", "prompting", "tfidf"] as const;
export const QUALITY_TASK_ORDER = ["toxicchat", "wildguardtest", "toxicchat-ood", "emotion", "sst2", "imdb"] as const;

/** `names` (deduplicated, first seen first) sorted by their place in `order`; names not in it keep their order, after. */
export function inPaperOrder(names: Iterable<string>, order: readonly string[]): string[] {
  const seen = [...new Set(names)];
  const rank = (n: string) => (order.includes(n) ? order.indexOf(n) : order.length + seen.indexOf(n));
  return seen.sort((a, b) => rank(a) - rank(b));
}
