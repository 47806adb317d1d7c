// `onepass serve` as a process: settings from environment variables, the URL and probes printed on start, and
// SIGTERM → stop accepting, let the running stream finish within the grace period, exit 0.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";

/** Start the CLI and wait for its first stdout lines (the URL and the probes). */
function serve(args: string[], env: Record<string, string>): Promise<{ child: ChildProcess; url: string; banner: string; exit: Promise<number | null> }> {
  const child = spawn(process.execPath, ["dist/src/cli/main.js", "serve", ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let out = "";
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL after 60 s; stderr: ${err}`)), 60_000);
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /at (http:\/\/[^\s]+)/.exec(out);
      if (m !== null && out.includes("\n") && /probe|probes: none/.test(out)) {
        clearTimeout(timer);
        setTimeout(() => resolve({ child, url: m[1], banner: out, exit }), 50);
      }
    });
    void exit.then((code) => reject(new Error(`exited with ${code} before serving: ${err}`)));
  });
}

test("no arguments: the built-in model and probes; SIGTERM exits 0", async () => {
  const { child, url, banner, exit } = await serve([], { ONEPASS_PORT: "0" });
  try {
    assert.match(banner, /serving stories260K at http:\/\/127\.0\.0\.1:\d+/);
    assert.match(banner, /probe sentiment: scoring, labels negative\/positive, annotate/);
    assert.match(banner, /probe safety: scoring, labels non-toxic\/toxic, annotate toxic/);
    const r = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ messages: [{ role: "user", content: "Hello" }], max_tokens: 4 }) });
    const body = (await r.json()) as { classifications: Record<string, unknown> };
    assert.deepEqual(Object.keys(body.classifications).sort(), ["safety", "sentiment"]);
  } finally {
    child.kill("SIGTERM");
  }
  assert.equal(await exit, 0);
});

test("settings from environment variables; SIGTERM lets the running stream finish, refuses new work, exits 0", async () => {
  const { child, url, banner, exit } = await serve([], {
    ONEPASS_PORT: "0", ONEPASS_API_KEY: "k3y", ONEPASS_PROBES: "guard=assets/probes/safety:block=toxic", ONEPASS_MODEL_NAME: "tiny", ONEPASS_GRACE_MS: "20000",
    ONEPASS_RESPONSE_PROBES: "tone=assets/probes/sentiment",
  });
  try {
    assert.match(banner, /serving tiny at/);
    assert.match(banner, /probe guard: scoring, labels non-toxic\/toxic, block toxic/);
    assert.match(banner, /response probe tone: scoring, labels negative\/positive, annotate/);
    assert.match(banner, /warning: tone was not trained on response tokens/);
    assert.equal((await fetch(`${url}/v1/models`)).status, 401);
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json", authorization: "Bearer k3y" },
      body: JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 200, temperature: 0, stream: true }),
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    await reader.read(); // the stream has started
    child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 200));
    // new work is refused while the running stream drains (503, or no connection once the listener is closed)
    const late = await fetch(`${url}/v1/models`, { headers: { authorization: "Bearer k3y" } }).then((r) => r.status, () => "refused");
    assert.ok(late === 503 || late === "refused", `late request: ${late}`);
    let text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    assert.ok(text.includes("data: [DONE]"), "the running stream finished within the grace period");
    assert.ok(text.includes('"response_classifications":{"tone":'), "the response probe's readings travel in the stream");
    assert.equal(await exit, 0);
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
});

test("--response-probe: a block policy without labels is a one-line error naming the flag", async () => {
  const child = spawn(process.execPath, ["dist/src/cli/main.js", "serve", "--response-probe", "assets/probes/safety:block", "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  assert.notEqual(code, 0);
  assert.match(err.trim(), /--response-probe.*block needs the labels it refuses/);
  assert.equal(err.trim().split("\n").length, 1, err);
});
