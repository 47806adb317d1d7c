/** `onepass report`: one self-contained HTML page from benchmark result files. */
import type { Command } from "../command.js";
import { InvalidArgumentError } from "../../errors.js";
import { writeFileAtomic } from "../../util/atomic.js";
import { EVAL_REPORT_MARKER, evalReportHtml, readResults } from "../../pages/eval-report.js";
import { checkPageTarget } from "../page-target.js";
import { parseArgs } from "node:util";
import { required } from "../args.js";

const usage = `usage: onepass report RESULTS... --out report.html [--title T]

Renders the quality and cost benchmarks' JSON files (results/quality.json, results/cost.json) as one
offline HTML page: both tables and their bar charts, inline SVG, nothing fetched.

  --out FILE            the page to write
  --title T             page title (default "onepass evaluation")
`;

export const reportCommand: Command = {
  name: "report",
  summary: "one offline HTML page from quality/cost benchmark results",
  usage,
  async run(argv) {
    let parsed: { values: { out?: string; title?: string }; positionals: string[] };
    try {
      parsed = parseArgs({ args: argv, options: { out: { type: "string" }, title: { type: "string" } }, strict: true, allowPositionals: true });
    } catch (err) {
      throw new InvalidArgumentError(`${(err as Error).message}\n\n${usage}`);
    }
    const v = parsed.values;
    const out = required("out", v.out, usage);
    const files = parsed.positionals;
    if (files.length === 0) throw new InvalidArgumentError("give at least one results file", { field: "RESULTS" });
    checkPageTarget(out, EVAL_REPORT_MARKER, "--out");
    writeFileAtomic(out, evalReportHtml(readResults(files), v.title));
    process.stdout.write(`report: ${out}\n`);
    return 0;
  },
};
