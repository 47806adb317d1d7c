import type { Command } from "../command.js";
import { InvalidArgumentError } from "../../errors.js";

// Placeholder until the engine lands.
export const generateCommand: Command = {
  name: "generate",
  summary: "(not built yet)",
  usage: "onepass generate",
  async run() {
    throw new InvalidArgumentError("onepass generate is not built yet");
  },
};
