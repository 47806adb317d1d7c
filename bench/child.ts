// One engine of a benchmark in its own process (bench/engine-worker.ts), driven over IPC: peak RSS per engine,
// not the order engines ran in one process.
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { cpus } from "node:os";
import { readFileSync } from "node:fs";

interface Memory {
  peakMiB: number;
  rssMiB: number;
}

/** One engine in its child process. */
export class Child {
  private proc: ChildProcess;
  private pending?: { resolve: (v: unknown) => void; reject: (e: Error) => void };
  ready: Promise<{ loadS: number } & Memory>;
  peakMiB = 0;

  constructor(
    readonly name: string,
    args: string[],
  ) {
    const script = fileURLToPath(new URL("./engine-worker.js", import.meta.url));
    this.proc = fork(script, args, { env: { ...process.env, ORT_DISABLE_TELEMETRY: "1" }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.ready = this.next();
    this.proc.on("message", (m: Record<string, unknown>) => {
      const p = this.pending;
      this.pending = undefined;
      if (typeof m.peakMiB === "number") this.peakMiB = Math.max(this.peakMiB, m.peakMiB);
      if (typeof m.error === "string") p?.reject(new Error(`${this.name}: ${m.error}`));
      else p?.resolve(m);
    });
    this.proc.on("exit", (code) => this.pending?.reject(new Error(`${this.name} exited with code ${code}`)));
  }

  private next<T>(): Promise<T> {
    return new Promise<T>((resolve, reject) => (this.pending = { resolve: resolve as (v: unknown) => void, reject }));
  }

  async ask<T>(msg: unknown): Promise<T & Memory> {
    const reply = this.next<T & Memory>();
    this.proc.send(msg as object);
    return reply;
  }

  async exit(): Promise<void> {
    const done = new Promise((r) => this.proc.once("exit", r));
    this.proc.send({ op: "exit" });
    await done;
  }
}

export function cpuLine(): string {
  const flags = readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:(.*)$/m)?.[1].trim().split(/\s+/) ?? [];
  const isa = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "avx_vnni"].filter((f) => flags.includes(f));
  return `${cpus()[0]?.model ?? "?"} × ${cpus().length} (${isa.join(", ")})`;
}

/**
 * Aggregate decode tokens/s while every stream is decoding (StreamsReply.tokenMs): tokens generated between the
 * last stream's first token and the first stream's last one, over that window. Unlike tokens / wall time it
 * leaves out the prompts' prefill (8 prompts cost 8 prefills however they are batched) and the tail where fewer
 * streams remain. NaN when the streams never all decode at once.
 */
export function steadyDecodeRate(tokenMs: number[][]): number {
  const start = Math.max(...tokenMs.map((t) => t[0]));
  const end = Math.min(...tokenMs.map((t) => t[t.length - 1]));
  if (!(end > start)) return NaN;
  const n = tokenMs.reduce((a, t) => a + t.filter((ms) => ms > start && ms <= end).length, 0);
  return (n * 1000) / (end - start);
}
