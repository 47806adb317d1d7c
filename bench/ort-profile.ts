// ORT's per-node profile (Chrome trace JSON, SessionOptions.enableProfiling) read back per model run: used by
// bench:floor (kernel time by op type) and bench:overhead (the tap branches' share of each prefill).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** One event of ORT's Chrome-trace profile. */
export interface TraceEvent {
  cat: string;
  name: string;
  ts: number; // µs since the session started profiling
  dur: number; // µs
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[] };
}

/** One model run and the kernel events inside it, in time order. */
export interface ProfiledRun {
  /** The run's wall time, µs. */
  dur: number;
  /** [B, T] read by the run's first MatMulNBits, or first MatMul in a float graph (undefined when it has neither). */
  rows?: number;
  tokens?: number;
  /** Every kernel event, a subgraph's nodes (inside an If) included: they nest in time inside their If's event. */
  nodes: TraceEvent[];
  /** Kernel events not inside another kernel event (an If counts once, with its branch's nodes in its time). */
  topLevel: TraceEvent[];
}

/** Every profile file `dir` holds whose name starts with `prefix`, parsed (one per session). */
export function readProfiles(dir: string, prefix: string): TraceEvent[][] {
  const files = readdirSync(dir).filter((f) => f.startsWith(prefix) && f.endsWith(".json")).sort();
  return files.map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")) as TraceEvent[]);
}

/** The profile's model runs in time order, each with its kernel events. */
export function profiledRuns(events: TraceEvent[]): ProfiledRun[] {
  const runs = events.filter((e) => e.cat === "Session" && e.name === "model_run").sort((a, b) => a.ts - b.ts);
  const nodes = events.filter((e) => e.cat === "Node" && e.name.endsWith("_kernel_time")).sort((a, b) => a.ts - b.ts);
  let n = 0;
  return runs.map((run) => {
    const inRun: TraceEvent[] = [];
    while (n < nodes.length && nodes[n].ts < run.ts) n++;
    while (n < nodes.length && nodes[n].ts <= run.ts + run.dur) inRun.push(nodes[n++]);
    // a subgraph node is reported before its If ends: nested = starts inside an earlier-starting event's span
    const byStart = [...inRun].sort((a, b) => a.ts - b.ts || b.dur - a.dur);
    const topLevel: TraceEvent[] = [];
    let end = -Infinity;
    for (const e of byStart) {
      if (e.ts >= end) {
        topLevel.push(e);
        end = e.ts + e.dur;
      }
    }
    // a block's first projection reads [B, T, d]: MatMulNBits for 4-bit weights, MatMul for float ones
    const first = inRun.find((e) => e.args?.op_name === "MatMulNBits") ?? inRun.find((e) => e.args?.op_name === "MatMul");
    const shape = first?.args?.input_type_shape?.[0];
    const dims = shape === undefined ? undefined : Object.values(shape)[0]; // [B, T, d]
    return { dur: run.dur, nodes: inRun, topLevel, ...(dims !== undefined && dims.length === 3 ? { rows: dims[0], tokens: dims[1] } : {}) };
  });
}
