/**
 * Progress on stderr for long CLI work: count/total, rate, ETA and elapsed time. On a TTY one line is
 * redrawn in place (at most every `redrawMs`); otherwise a plain line is printed every `plainEveryMs` and at
 * the end, so logs stay readable. Disabled → no output at all.
 */

export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  total: number;
  /** Prefix, e.g. "extract". */
  label?: string;
  /** Unit for the rate, e.g. "ex" → "12.3 ex/s". */
  unit?: string;
  stream?: ProgressStream;
  enabled?: boolean;
  /** Minimum time between TTY redraws (default 100 ms). */
  redrawMs?: number;
  /** Time between plain lines when not a TTY (default 10 s). */
  plainEveryMs?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

/** "1:02:03" / "2:03" */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

export class ProgressBar {
  private readonly total: number;
  private readonly label: string;
  private readonly unit: string;
  private readonly stream: ProgressStream;
  private readonly enabled: boolean;
  private readonly tty: boolean;
  private readonly redrawMs: number;
  private readonly plainEveryMs: number;
  private readonly now: () => number;
  private readonly start: number;
  /** Count at the start (resumed work does not count towards the rate). */
  private base = -1;
  private done = 0;
  private lastDraw = -Infinity;
  private finished = false;

  constructor(options: ProgressOptions) {
    this.total = options.total;
    this.label = options.label ?? "";
    this.unit = options.unit ?? "it";
    this.stream = options.stream ?? process.stderr;
    this.enabled = options.enabled ?? true;
    this.tty = this.stream.isTTY === true;
    this.redrawMs = options.redrawMs ?? 100;
    this.plainEveryMs = options.plainEveryMs ?? 10_000;
    this.now = options.now ?? (() => performance.now());
    this.start = this.now();
  }

  /** Set the count of finished items (the first call sets the baseline for the rate, e.g. resumed work). */
  update(done: number): void {
    if (this.base < 0) this.base = done;
    this.done = done;
    if (!this.enabled || this.finished) return;
    const t = this.now();
    if (t - this.lastDraw < (this.tty ? this.redrawMs : this.plainEveryMs)) return;
    this.lastDraw = t;
    this.draw(t);
  }

  tick(n = 1): void {
    this.update((this.base < 0 ? 0 : this.done) + n);
  }

  /** Final line (always printed when enabled). */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (!this.enabled) return;
    this.draw(this.now());
    if (this.tty) this.stream.write("\n");
  }

  /** The status text for the current state (no bar). */
  status(t = this.now()): string {
    const elapsed = (t - this.start) / 1000;
    const fresh = this.done - Math.max(this.base, 0);
    const rate = elapsed > 0 ? fresh / elapsed : 0;
    const left = this.total - this.done;
    const eta = rate > 0 ? left / rate : left === 0 ? 0 : NaN;
    const pct = this.total > 0 ? ((100 * this.done) / this.total).toFixed(1) : "100.0";
    const prefix = this.label ? `${this.label} ` : "";
    return `${prefix}${this.done}/${this.total} (${pct}%) ${rate.toFixed(rate < 10 ? 2 : 1)} ${this.unit}/s ETA ${formatDuration(eta)} elapsed ${formatDuration(elapsed)}`;
  }

  private draw(t: number): void {
    const text = this.status(t);
    if (!this.tty) {
      this.stream.write(text + "\n");
      return;
    }
    const width = Math.max(10, Math.min(30, (this.stream.columns ?? 80) - text.length - 4));
    const filled = this.total > 0 ? Math.round((width * Math.min(this.done, this.total)) / this.total) : width;
    const bar = "[" + "#".repeat(filled) + ".".repeat(width - filled) + "]";
    this.stream.write(`\r${bar} ${text}\x1b[K`);
  }
}

/** One report of staged library work (the shape of the library's onProgress events). */
export interface StageProgressEvent {
  stage: string;
  done: number;
  total: number;
  unit: string;
}

/**
 * An `onProgress` callback for library work with named stages (e.g. "building graph"): one ProgressBar per
 * stage, labelled with the stage, created on its first report and finished when it reaches its total. Nothing
 * is printed for work that never reports (a graph cache hit). Stages may interleave (int4 quantising happens
 * during the graph build): each keeps its own rate and ETA.
 */
export function stageProgress(options: Omit<ProgressOptions, "total" | "label" | "unit"> = {}): (p: StageProgressEvent) => void {
  const bars = new Map<string, ProgressBar>();
  return (p) => {
    if (options.enabled === false) return;
    let bar = bars.get(p.stage);
    if (bar === undefined) {
      bar = new ProgressBar({ ...options, total: p.total, label: p.stage, unit: p.unit });
      bars.set(p.stage, bar);
    }
    bar.update(p.done);
    if (p.done >= p.total) bar.finish();
  };
}
