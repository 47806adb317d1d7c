// A worker thread that runs CLI invocations in-process for the tests (not a test file itself). Its
// process.stdout/stderr are its own (piped to the parent), so capturing them here never touches the test
// runner's own reporting on the parent's stdout.
import { parentPort } from "node:worker_threads";
import { runCli } from "../src/cli/run.js";

interface Job { id: number; argv: string[]; env: Record<string, string | undefined> }

const port = parentPort!;
let queue = Promise.resolve();
port.on("message", (job: Job) => {
  queue = queue.then(async () => {
    let stdout = "", stderr = "";
    // bounded, as a runaway message would not be
    const cap = (s: string, chunk: unknown) => (s.length > 1_000_000 ? s : s + (typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString("utf8")));
    const out = process.stdout.write, err = process.stderr.write;
    process.stdout.write = ((c: unknown) => ((stdout = cap(stdout, c)), true)) as typeof process.stdout.write;
    process.stderr.write = ((c: unknown) => ((stderr = cap(stderr, c)), true)) as typeof process.stderr.write;
    const saved = Object.fromEntries(Object.keys(job.env).map((k) => [k, process.env[k]]));
    for (const [k, v] of Object.entries(job.env)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    let code: number;
    try {
      code = await runCli(job.argv);
    } finally {
      process.stdout.write = out;
      process.stderr.write = err;
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    port.postMessage({ id: job.id, code, stdout, stderr });
  });
});
