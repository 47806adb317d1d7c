/** A CLI command: one file per command under cli/commands, each a thin layer over the library API. */
export interface Command {
  name: string;
  /** One line for `onepass --help`. */
  summary: string;
  /** Full text for `onepass <name> --help`. */
  usage: string;
  run(argv: string[]): Promise<number>;
}
