/**
 * `onepass/testing`: scaffolding for tests and benchmarks, kept out of the main API — seeded random-weight
 * models of real shapes, and a small float64 forward pass to check the engine's hidden states against.
 */
export { writeRandomModel, randomModelContents, type RandomModelOptions } from "./model/gguf/index.js";
export { referenceForward, type ReferenceResult } from "./reference/forward.js";
