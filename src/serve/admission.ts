/**
 * The bounded queue in front of the engine: at most `concurrency` requests run, at most `maxQueue` wait; a
 * request beyond that is refused at once (429) instead of piling up memory and latency. A waiting request
 * whose client goes away (its signal aborts) leaves the queue without ever touching the engine.
 */
import { QueueFullError, ShuttingDownError } from "./errors.js";

interface Waiter {
  grant: (release: () => void) => void;
  fail: (err: unknown) => void;
}

export class Admission {
  private running = 0;
  private readonly waiting: Waiter[] = [];
  private closed = false;

  constructor(
    readonly concurrency: number,
    readonly maxQueue: number,
    /** Called whenever the counts change (metrics). */
    private readonly onChange: (running: number, waiting: number) => void = () => {},
  ) {}

  get depth(): number {
    return this.waiting.length;
  }
  get active(): number {
    return this.running;
  }

  /** Wait for a turn; resolves with the function that ends it. Throws QueueFullError when the queue is full. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.closed) return Promise.reject(new ShuttingDownError("the server is shutting down"));
    if (this.running < this.concurrency) {
      this.running++;
      this.changed();
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.maxQueue) {
      // a rough wait: one running request ahead per queued one, a second or so each on the built-in model
      const retryAfterS = Math.max(1, Math.ceil((this.waiting.length + this.running) / Math.max(1, this.concurrency)));
      return Promise.reject(new QueueFullError(`the server is busy: ${this.running} running, ${this.waiting.length} queued (limit ${this.maxQueue}); retry after ${retryAfterS} s`, retryAfterS));
    }
    return new Promise<() => void>((resolve, reject) => {
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(release);
        },
        fail: (err) => {
          signal?.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      const onAbort = (): void => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        this.changed();
        reject(signal?.reason ?? new Error("aborted"));
      };
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(waiter);
      this.changed();
    });
  }

  /** Refuse new requests and fail every waiting one (ShuttingDownError). Running ones keep their turn. */
  close(): void {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w.fail(new ShuttingDownError("the server is shutting down"));
    this.changed();
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiting.shift();
      if (next !== undefined) next.grant(this.releaser());
      else this.running--;
      this.changed();
    };
  }

  private changed(): void {
    this.onChange(this.running, this.waiting.length);
  }
}
