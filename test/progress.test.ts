import { test } from "node:test";
import assert from "node:assert/strict";
import { ProgressBar, formatDuration } from "../src/cli/progress.js";

function fakeStream(isTTY: boolean) {
  const chunks: string[] = [];
  return { chunks, stream: { isTTY, columns: 100, write: (s: string) => chunks.push(s) } };
}

test("progress: TTY redraws one line with count, rate, ETA and elapsed; throttled", () => {
  let now = 0;
  const { chunks, stream } = fakeStream(true);
  const bar = new ProgressBar({ total: 100, label: "extract", unit: "ex", stream, now: () => now, redrawMs: 100 });
  bar.update(0); // baseline
  now = 2000;
  bar.update(20); // 20 items in 2 s → 10 ex/s, 80 left → ETA 8 s
  assert.equal(chunks.length, 2);
  chunks.shift();
  assert.match(chunks[0], /^\r\[#+\.+\] extract 20\/100 \(20\.0%\) 10\.0 ex\/s ETA 0:08 elapsed 0:02\x1b\[K$/);
  now = 2050;
  bar.update(21); // within 100 ms: not redrawn
  assert.equal(chunks.length, 1);
  now = 62_000;
  bar.update(50);
  assert.match(chunks[1], /50\/100 \(50\.0%\) 0\.81 ex\/s ETA 1:02 elapsed 1:02/);
  bar.finish();
  assert.equal(chunks.at(-1), "\n");
  bar.update(60);
  assert.equal(chunks.at(-1), "\n"); // nothing after finish
});

test("progress: not a TTY → plain lines at an interval and at the end; resumed work not in the rate", () => {
  let now = 0;
  const { chunks, stream } = fakeStream(false);
  const bar = new ProgressBar({ total: 10, stream, now: () => now, plainEveryMs: 5000 });
  bar.update(4); // baseline: resumed work
  assert.equal(chunks.length, 1);
  assert.match(chunks[0], /^4\/10 \(40\.0%\) 0\.00 it\/s ETA \? elapsed 0:00\n$/);
  now = 1000;
  bar.update(5);
  assert.equal(chunks.length, 1); // under 5 s since the last line
  now = 6000;
  bar.update(7); // 3 new in 6 s = 0.5/s, 3 left → 6 s
  assert.equal(chunks[1], "7/10 (70.0%) 0.50 it/s ETA 0:06 elapsed 0:06\n");
  assert.ok(!chunks.join("").includes("\r") && !chunks.join("").includes("\x1b"));
  bar.finish();
  assert.match(chunks[2], /^7\/10/);
});

test("progress: disabled writes nothing; durations format", () => {
  const { chunks, stream } = fakeStream(true);
  const bar = new ProgressBar({ total: 3, stream, enabled: false });
  bar.tick();
  bar.tick();
  bar.finish();
  assert.deepEqual(chunks, []);
  assert.equal(formatDuration(3725), "1:02:05");
  assert.equal(formatDuration(59.6), "1:00");
  assert.equal(formatDuration(NaN), "?");
});
