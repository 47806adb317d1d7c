/** Prometheus metrics of one server, on its own registry (two servers in one process do not mix). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Buckets for per-stage latencies, seconds: 0.5 ms … 30 s. */
const SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class ServeMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: "onepass_http_requests_total", help: "HTTP requests by route, method and status", labelNames: ["route", "method", "status"], registers: [this.registry] });
  readonly queueDepth = new Gauge({ name: "onepass_queue_depth", help: "Requests waiting for the engine", registers: [this.registry] });
  readonly active = new Gauge({ name: "onepass_active_requests", help: "Requests running on the engine", registers: [this.registry] });
  readonly rejected = new Counter({ name: "onepass_rejected_total", help: "Requests refused before reaching the engine, by reason", labelNames: ["reason"], registers: [this.registry] });
  readonly requestSeconds = new Histogram({ name: "onepass_request_duration_seconds", help: "Request latency by route", labelNames: ["route"], buckets: SECONDS, registers: [this.registry] });
  readonly prefillSeconds = new Histogram({ name: "onepass_prefill_seconds", help: "Prefill run time (prompt → first logits + hidden states)", buckets: SECONDS, registers: [this.registry] });
  readonly probeSeconds = new Histogram({ name: "onepass_probe_seconds", help: "Probe time per request, by probe", labelNames: ["probe"], buckets: SECONDS, registers: [this.registry] });
  readonly decodeSeconds = new Histogram({ name: "onepass_decode_seconds", help: "Decode time per request (all steps)", buckets: SECONDS, registers: [this.registry] });
  readonly promptTokens = new Counter({ name: "onepass_prompt_tokens_total", help: "Prompt tokens prefilled", registers: [this.registry] });
  readonly completionTokens = new Counter({ name: "onepass_completion_tokens_total", help: "Tokens generated", registers: [this.registry] });
  readonly decisions = new Counter({ name: "onepass_probe_decisions_total", help: "Probe decisions by probe and label", labelNames: ["probe", "label"], registers: [this.registry] });
  readonly responseProbeSeconds = new Histogram({ name: "onepass_response_probe_seconds", help: "Response probe time per generated token, by probe", labelNames: ["probe"], buckets: SECONDS, registers: [this.registry] });
  readonly responseDecisions = new Counter({ name: "onepass_response_probe_decisions_total", help: "Response probes' final label per answer, by probe and label", labelNames: ["probe", "label"], registers: [this.registry] });
  readonly responseStopped = new Counter({ name: "onepass_response_stopped_total", help: "Answers stopped by a blocking response probe (finish_reason content_filter), by probe", labelNames: ["probe"], registers: [this.registry] });
  readonly blocked = new Counter({ name: "onepass_blocked_total", help: "Requests refused by a blocking probe, by probe", labelNames: ["probe"], registers: [this.registry] });

  constructor() {
    // process metrics (RSS, heap, event-loop lag) with the same registry
    collectDefaultMetrics({ register: this.registry, prefix: "onepass_" });
  }
}
