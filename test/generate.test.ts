// The generation loop's mechanics (stop strings, EOS, budgets, streaming, the prefill hook) on a tiny scripted
// decoder whose next token is known in advance, with a byte-level vocabulary decoded by TextDecoder.
import { test } from "node:test";
import assert from "node:assert/strict";
import { generate, type GenerateChunk } from "../src/engine/generate.js";
import { StopStringMatcher } from "../src/engine/stop.js";
import { HiddenStates } from "../src/types/hidden.js";
import type { DecoderSession, ForwardOptions, ForwardPass } from "../src/engine/types.js";
import type { Tokenizer } from "../src/tokenizer/types.js";
import { ContextOverflowError, InvalidArgumentError } from "../src/errors.js";

const BOS = 0;
const EOS = 1;
/** Pieces as raw bytes: id 2.. are text; "€" (E2 82 AC) is split over two tokens. */
const PIECES: Uint8Array[] = [
  new Uint8Array(0), // BOS
  new Uint8Array(0), // EOS
  ...["He", "llo", " wor", "ld", "!", " STOP", "S", "TO", "P"].map((s) => new TextEncoder().encode(s)),
  Uint8Array.from([0xe2, 0x82]),
  Uint8Array.from([0xac]),
];
const ID = (piece: string): number => PIECES.findIndex((p, i) => i > 1 && new TextDecoder().decode(p) === piece);
const EURO_A = PIECES.length - 2;
const EURO_B = PIECES.length - 1;

const tokenizer: Tokenizer = {
  vocabSize: PIECES.length,
  bosTokenId: BOS,
  eosTokenIds: [EOS],
  addBosByDefault: true,
  encode: () => {
    throw new Error("not used");
  },
  decode(ids) {
    const bytes = ids.filter((i) => i > 1).flatMap((i) => Array.from(PIECES[i]));
    return new TextDecoder().decode(Uint8Array.from(bytes));
  },
  idToToken: (id) => (id < PIECES.length ? new TextDecoder().decode(PIECES[id]) : undefined),
  tokenToId: () => undefined,
  isSpecial: (id) => id <= 1,
};

const LAYERS = 3; // L + 1
const DIM = 4;

/** A decoder that emits `script` after any prompt, then EOS; records every call. */
class ScriptedSession implements DecoderSession {
  readonly vocabSize = PIECES.length;
  readonly hasTaps = true;
  pastLength = 0;
  calls: { tokens: number[]; hidden: boolean }[] = [];
  events: string[] = [];
  private promptLength = 0;
  constructor(private readonly script: number[], readonly contextLength = 64) {}
  async forward(tokens: readonly number[], options: ForwardOptions = {}): Promise<ForwardPass> {
    if (this.pastLength === 0) this.promptLength = tokens.length;
    this.calls.push({ tokens: [...tokens], hidden: options.hidden === true });
    this.events.push(this.pastLength === 0 ? "prefill" : "decode");
    this.pastLength += tokens.length;
    const step = this.pastLength - this.promptLength; // tokens generated so far
    const next = step < this.script.length ? this.script[step] : EOS;
    const logits = new Float32Array(this.vocabSize).fill(-5); // [1, V]
    logits[next] = 5;
    const hidden = options.hidden
      ? new HiddenStates(LAYERS, tokens.length, DIM, Float32Array.from({ length: LAYERS * tokens.length * DIM }, (_, i) => i)) // [L+1, T, d]
      : undefined;
    return { logits, positions: 1, hidden, runMs: 0 };
  }
  reset(): void {
    this.pastLength = 0;
  }
  truncate(n: number): void {
    this.pastLength = n;
  }
  async dispose(): Promise<void> {}
}

const HELLO = [ID("He"), ID("llo"), ID(" wor"), ID("ld"), ID("!")];

async function collect(gen: AsyncIterable<GenerateChunk>): Promise<GenerateChunk[]> {
  const out: GenerateChunk[] = [];
  for await (const c of gen) out.push(c);
  return out;
}

test("greedy run to EOS: chunks concatenate to the text; EOS is not output", async () => {
  const session = new ScriptedSession(HELLO);
  const g = generate(session, tokenizer, [BOS], { temperature: 0, maxTokens: 20 });
  const chunks = await collect(g);
  const r = await g.result;
  assert.equal(r.text, "Hello world!");
  assert.equal(chunks.map((c) => c.text).join(""), r.text);
  assert.deepEqual(r.tokens, HELLO);
  assert.equal(r.finishReason, "eos");
  assert.deepEqual(r.usage, { promptTokens: 1, completionTokens: HELLO.length + 1 });
  // prefill once with the prompt, then one run per generated token (none after EOS)
  assert.deepEqual(session.calls.map((c) => c.tokens), [[BOS], ...HELLO.map((t) => [t])]);
});

test("maxTokens ends with 'length' and never runs the model for the last token", async () => {
  const session = new ScriptedSession(HELLO);
  const r = await generate(session, tokenizer, [BOS], { temperature: 0, maxTokens: 3 }).result;
  assert.equal(r.text, "Hello wor");
  assert.equal(r.finishReason, "length");
  assert.equal(r.tokens.length, 3);
  assert.equal(session.calls.length, 3); // prefill + 2 decode runs
  // no maxTokens: the budget is what the context window leaves
  const small = await generate(new ScriptedSession(HELLO, 4), tokenizer, [BOS, ID("!")], { temperature: 0 }).result;
  assert.deepEqual([small.text, small.finishReason], ["Hello", "length"]);
});

test("stop strings across token boundaries: not emitted, held-back text released when it cannot match", async () => {
  // " wor" + "ld": "o wo" spans 2 tokens; "llo wor" spans 3 pieces
  for (const [stop, expected] of [
    ["o wo", "Hell"],
    ["llo wor", "He"],
    ["ld!", "Hello wor"],
    ["world?", "Hello world!"], // a prefix matches for a while, then fails: everything comes out
  ] as const) {
    const g = generate(new ScriptedSession(HELLO), tokenizer, [BOS], { temperature: 0, maxTokens: 20, stop: [stop] });
    const chunks = await collect(g);
    const r = await g.result;
    assert.equal(r.text, expected, `stop ${JSON.stringify(stop)}`);
    assert.equal(chunks.map((c) => c.text).join(""), expected);
    assert.equal(r.finishReason, expected === "Hello world!" ? "eos" : "stop");
    if (r.finishReason === "stop") assert.equal(r.stopString, stop);
  }
  // a stop string completed by the budget's last token still stops; a partial one at the budget is released
  const r1 = await generate(new ScriptedSession([ID("He"), ID(" STOP")]), tokenizer, [BOS], { temperature: 0, maxTokens: 2, stop: "STOP" }).result;
  assert.deepEqual([r1.text, r1.finishReason], ["He ", "stop"]);
  const r2 = await generate(new ScriptedSession([ID("He"), ID("S"), ID("TO")]), tokenizer, [BOS], { temperature: 0, maxTokens: 3, stop: "STOP" }).result;
  assert.deepEqual([r2.text, r2.finishReason], ["HeSTO", "length"]);
  // the earliest of several stop strings wins
  const r3 = await generate(new ScriptedSession([ID("He"), ID("S"), ID("TO"), ID("P")]), tokenizer, [BOS], { temperature: 0, maxTokens: 9, stop: ["OP", "ST"] }).result;
  assert.deepEqual([r3.text, r3.stopString], ["He", "ST"]);
});

test("a character split over two tokens is streamed whole, never as U+FFFD", async () => {
  const g = generate(new ScriptedSession([ID("He"), EURO_A, EURO_B, ID("!")]), tokenizer, [BOS], { temperature: 0, maxTokens: 10 });
  const chunks = await collect(g);
  assert.deepEqual(chunks.map((c) => c.text), ["He", "", "€", "!"]);
  assert.equal((await g.result).text, "He€!");
  // cut by the budget right after the first half: the incomplete byte comes out at the end
  const r = await generate(new ScriptedSession([ID("He"), EURO_A]), tokenizer, [BOS], { temperature: 0, maxTokens: 2 }).result;
  assert.equal(r.text, "He\uFFFD");
});

test("onPrefill gets the prompt's hidden states [L+1, T, d] before any decode step; {stop:true} yields nothing", async () => {
  const session = new ScriptedSession(HELLO);
  const prompt = [BOS, ID("He"), ID("llo")];
  let seen: ForwardPass | undefined;
  const g = generate(session, tokenizer, prompt, {
    temperature: 0,
    maxTokens: 4,
    onPrefill: async (pass, info) => {
      await new Promise((r) => setTimeout(r, 5)); // async hooks are awaited
      session.events.push("hook");
      seen = pass;
      assert.deepEqual(info.promptTokens, prompt);
    },
  });
  await collect(g);
  assert.deepEqual(session.events.slice(0, 3), ["prefill", "hook", "decode"]);
  assert.ok(seen?.hidden);
  assert.equal(seen.hidden.tokens, prompt.length);
  assert.equal(seen.hidden.layers, LAYERS);
  assert.equal(session.calls[0].hidden, true);
  assert.equal(session.calls[1].hidden, false); // decode steps do not copy hidden states out

  const stopped = new ScriptedSession(HELLO);
  const g2 = generate(stopped, tokenizer, prompt, { temperature: 0, maxTokens: 4, onPrefill: () => ({ stop: true }) });
  const chunks = await collect(g2);
  const r = await g2.result;
  assert.equal(chunks.length, 0);
  assert.deepEqual([r.text, r.tokens, r.finishReason, r.usage.completionTokens], ["", [], "stop", 0]);
  assert.deepEqual(stopped.events, ["prefill"]);
});

test("context overflow and bad options are typed errors before any model run", () => {
  const session = new ScriptedSession(HELLO, 8);
  assert.throws(
    () => generate(session, tokenizer, [BOS, 2, 3, 4, 5], { maxTokens: 4 }),
    (e: unknown) => e instanceof ContextOverflowError && e.field === "context_length",
  );
  // a prompt that alone overflows names that limit, not the token budget (maxTokens 0 is a classify-only run)
  assert.throws(
    () => generate(session, tokenizer, Array(9).fill(2), { maxTokens: 0 }),
    (e: unknown) => e instanceof ContextOverflowError && /the prompt has 9 tokens, which exceeds the context window of 8/.test(e.message) && !e.message.includes("maxTokens"),
  );
  assert.throws(() => generate(session, tokenizer, [BOS, 2, 3, 4, 5], { maxTokens: 4 }), /prompt \(5 tokens\) \+ maxTokens \(4\) = 9 exceeds the context window of 8/);
  generate(session, tokenizer, [BOS, 2, 3, 4], { maxTokens: 4 }); // exactly fits
  assert.throws(() => generate(session, tokenizer, [], {}), InvalidArgumentError);
  assert.throws(() => generate(session, tokenizer, [BOS, 999], {}), (e: unknown) => e instanceof InvalidArgumentError && e.offset === 1);
  assert.throws(() => generate(session, tokenizer, [BOS], { maxTokens: -1 }), InvalidArgumentError);
  assert.throws(() => generate(session, tokenizer, [BOS], { stop: [""] }), InvalidArgumentError);
  assert.equal(session.calls.length, 0);
});

test("abort signal and early break end the run with 'abort'; result without iterating runs to the end", async () => {
  const ac = new AbortController();
  const g = generate(new ScriptedSession(HELLO), tokenizer, [BOS], { temperature: 0, maxTokens: 20, signal: ac.signal });
  const got: string[] = [];
  for await (const c of g) {
    got.push(c.text);
    if (got.length === 2) ac.abort();
  }
  const r = await g.result;
  assert.deepEqual([r.text, r.finishReason], ["Hello", "abort"]);

  const g2 = generate(new ScriptedSession(HELLO), tokenizer, [BOS], { temperature: 0, maxTokens: 20 });
  for await (const c of g2) if (c.text === "llo") break;
  const r2 = await g2.result;
  assert.deepEqual([r2.text, r2.finishReason], ["Hello", "abort"]);

  const r3 = await generate(new ScriptedSession(HELLO), tokenizer, [BOS], { temperature: 0, maxTokens: 20 }).result;
  assert.equal(r3.text, "Hello world!");
});

test("an error in onPrefill rejects the result and reaches the iterating consumer", async () => {
  const g = generate(new ScriptedSession(HELLO), tokenizer, [BOS], {
    onPrefill: () => {
      throw new Error("probe failed");
    },
  });
  await assert.rejects(collect(g), /probe failed/);
  await assert.rejects(g.result, /probe failed/);
});

test("StopStringMatcher piece by piece", () => {
  const m = new StopStringMatcher(["</s>", "\n\n"]);
  assert.deepEqual(m.push("a<"), { text: "a", stopped: false });
  assert.deepEqual(m.push("/"), { text: "", stopped: false });
  assert.deepEqual(m.push("x\n"), { text: "</x", stopped: false });
  assert.deepEqual(m.push("\nrest"), { text: "", stopped: true, stop: "\n\n" });
});
