/** Public serve API (re-exported from src/index.ts): the OpenAI-compatible server, its protocol and errors. */
export { createServer, startServer, type ServeOptions, type OnepassServer } from "./server.js";
export { parseProbeSpec, builtinProbeSpecs, loadServedProbes, type ProbeSpec, type ServedProbe } from "./probes.js";
export { Admission } from "./admission.js";
export { ServeMetrics } from "./metrics.js";
export * from "./errors.js";
export type * from "./protocol.js";
