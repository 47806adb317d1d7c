/** A minimal progress bar on stderr (rate and ETA), used by the probe commands when the CLI has none. */
export class ProgressBar {
  private readonly start = performance.now();
  private last = 0;
  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly unit = "it",
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}
  update(done: number, note = ""): void {
    const now = performance.now();
    if (now - this.last < 100 && done < this.total) return;
    this.last = now;
    const secs = (now - this.start) / 1000;
    const rate = done / Math.max(secs, 1e-9);
    const eta = rate > 0 ? (this.total - done) / rate : 0;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const width = 24;
    const bar = "#".repeat(Math.round(frac * width)).padEnd(width, ".");
    const line = `${this.label} [${bar}] ${done}/${this.total} ${rate.toFixed(1)} ${this.unit}/s ETA ${eta.toFixed(0)}s ${note}`;
    if (this.stream.isTTY) this.stream.write(`\r${line.slice(0, (this.stream.columns ?? 120) - 1)}`);
    else if (done >= this.total) this.stream.write(line + "\n");
  }
  finish(): void {
    if (this.stream.isTTY) this.stream.write("\n");
  }
}
