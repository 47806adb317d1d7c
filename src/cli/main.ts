#!/usr/bin/env node
/** `onepass` command-line entry: runs the CLI (src/cli/run.ts) on this process's arguments. */
import { runCli } from "./run.js";

runCli(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
