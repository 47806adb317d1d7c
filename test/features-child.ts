/** Child process for the resume test: extracts fake features into argv[2] (n = argv[3], delay = argv[4] ms). */
import { extractFeatures } from "../src/data/features.js";
import { fakeExamples, fakeSource } from "./features-fake.js";

const [outDir, n, delay, fingerprint] = process.argv.slice(2);
const result = await extractFeatures({
  source: fakeSource({ delayMs: Number(delay), fingerprint }),
  examples: fakeExamples(Number(n)),
  labelNames: ["a", "b", "c"],
  dataset: { name: "fake" },
  outDir,
  shardSize: 16,
});
process.stdout.write(JSON.stringify(result) + "\n");
