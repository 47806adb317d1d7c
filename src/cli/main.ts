#!/usr/bin/env node
/** `onepass` command-line entry: dispatches to one file per command. */
import { OnepassError } from "../errors.js";
import { commands } from "./commands/index.js";

function topHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    "onepass — serve a causal LLM and classify its traffic with probes on its own hidden states",
    "",
    "usage: onepass <command> [options]      (onepass <command> --help for details)",
    "",
    "commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(topHelp() + "\n");
    return name === undefined ? 1 : 0;
  }
  const command = commands.find((c) => c.name === name);
  if (command === undefined) {
    process.stderr.write(`onepass: unknown command '${name}'\n\n${topHelp()}\n`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(command.usage.trimEnd() + "\n");
    return 0;
  }
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof OnepassError) {
      process.stderr.write(`onepass: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`onepass: internal error: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
      process.exitCode = 70;
    }
  },
);
