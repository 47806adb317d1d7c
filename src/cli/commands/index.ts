import type { Command } from "../command.js";
import { convertCommand } from "./convert.js";
import { extractCommand } from "./extract.js";
import { generateCommand } from "./generate.js";
import { inspectCommand } from "./inspect.js";
import { trainCommand } from "./train.js";
import { evalCommand } from "./eval.js";
import { classifyCommand } from "./classify.js";
import { serveCommand } from "./serve.js";
import { reportCommand } from "./report.js";
import { benchCommand } from "./bench.js";

/** Every command, in the order `onepass --help` lists them. */
export const commands: Command[] = [serveCommand, generateCommand, inspectCommand, convertCommand, extractCommand, trainCommand, evalCommand, classifyCommand, benchCommand, reportCommand];
