/**
 * ONNX Runtime's telemetry is off unless the user opts in with ONEPASS_ORT_TELEMETRY=1.
 *
 * Why: onnxruntime-node 1.30's Linux build starts a telemetry system when the first session is created. It
 * reads /proc/self/cmdline (any argument over ~25–30k characters, e.g. a long --prompt, then segfaults inside
 * libonnxruntime), keeps a database under ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ and can upload
 * events, while users' prompts pass through this process. The library reads ORT_DISABLE_TELEMETRY with
 * getenv when it creates its environment (on the first session, not at import), and Node's process.env
 * writes the real environment, so setting it here, before any session exists, is enough. Every module that
 * imports onnxruntime-node imports this module first.
 */
if (process.env.ONEPASS_ORT_TELEMETRY !== "1") process.env.ORT_DISABLE_TELEMETRY = "1";

/** True when ONNX Runtime's telemetry was left on (ONEPASS_ORT_TELEMETRY=1). */
export const ortTelemetryEnabled = process.env.ONEPASS_ORT_TELEMETRY === "1";
