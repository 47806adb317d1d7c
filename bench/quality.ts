// The quality table: a thin wrapper over `onepass bench quality` (src/bench/quality.ts), same flags.
//   npm run bench:quality -- --data-dir ../shared/data --tasks toxicchat,emotion,sst2 --seeds 3 --out results
import { runCli } from "../src/cli/run.js";

process.exitCode = await runCli(["bench", "quality", ...process.argv.slice(2)]);
