import type { Command } from "../command.js";
import { InvalidArgumentError } from "../../errors.js";

// Placeholder until the engine lands.
export const inspectCommand: Command = {
  name: "inspect",
  summary: "(not built yet)",
  usage: "onepass inspect",
  async run() {
    throw new InvalidArgumentError("onepass inspect is not built yet");
  },
};
