// The cost table: a thin wrapper over `onepass bench cost` (src/bench/cost.ts), same flags.
//   npm run bench:cost -- --data-dir ../shared/data --samples 40 --out results     # --qwen: Qwen/Llama-shaped models
import { runCli } from "../src/cli/run.js";

process.exitCode = await runCli(["bench", "cost", ...process.argv.slice(2)]);
