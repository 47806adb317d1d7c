// Shared by the benchmarks: numeric flags; the random-weight Qwen2.5-0.5B-shaped model lives in the library.
export { ensureQwenShapedModel, QWEN_SHAPED_PATH } from "../src/bench/models.js";

/** The number after `--name` on the command line, or `fallback`. */
export function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

/** The middle element of `xs` (the upper one of the two middles for an even count). */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** n seeded pseudo-random token ids below `vocab` (default: the Qwen2.5-0.5B-shaped model's 151,936), none below 3. */
export function promptTokens(n: number, seed: number, vocab = 151936): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return 3 + (s % (vocab - 3));
  });
}
