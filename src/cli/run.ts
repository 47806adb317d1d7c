/** The CLI as a function: `runCli(argv)` dispatches to one file per command and returns the exit status. */
import { OnepassError } from "../errors.js";
import { fsError, isErrno } from "../util/fs-errors.js";
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

async function dispatch(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(topHelp() + "\n");
    return name === undefined ? 1 : 0;
  }
  const command = commands.find((c) => c.name === name);
  if (command === undefined) {
    process.stderr.write(`onepass: unknown command '${name}' (onepass --help lists them)\n`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(command.usage.trimEnd() + "\n");
    return 0;
  }
  return command.run(rest);
}

/**
 * Runs one CLI invocation and returns its exit status: 0 success, 1 a typed error (printed as one line
 * `onepass: ...` on stderr), 2 an unknown command, 70 an internal error (a bug: printed with its stack).
 * A file-system failure that escaped a command (EACCES, EROFS, ENOSPC, ...) is still printed as one line.
 */
export async function runCli(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (err) {
    const typed = err instanceof OnepassError ? err : isErrno(err) ? (fsError(err, undefined, describeSyscall(err.syscall)) as OnepassError) : undefined;
    if (typed !== undefined) {
      // Exactly one line, of bounded length, whatever the message holds (a label list, a pasted prompt).
      let line = typed.message.replace(/\s*\n\s*/g, " ");
      if (line.length > 2000) line = `${line.slice(0, 2000)}… (${line.length} characters)`;
      process.stderr.write(`onepass: ${line}\n`);
      return 1;
    }
    process.stderr.write(`onepass: internal error: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    return 70;
  }
}

function describeSyscall(syscall: string | undefined): string {
  switch (syscall) {
    case "open": case "read": case "stat": case "lstat": case "scandir": return "read or open";
    case "mkdir": return "create the folder";
    case "rename": case "write": case "unlink": case "rmdir": case "ftruncate": case "fsync": case "copyfile": return "write";
    default: return syscall ?? "access";
  }
}
