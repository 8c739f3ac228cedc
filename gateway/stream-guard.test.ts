// StreamGuard with a fake upstream: per-identity cap, release on every kind of end, and the
// end at token expiry (fake timers: no waiting on the wall clock).
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Identity } from "../platform/identity.js";
import { StreamGuard } from "./stream-guard.js";

/** An upstream that yields `first` and then waits until its signal aborts (as grpc-js does: Canceled). */
async function* idleUpstream(signal: AbortSignal, first: number[] = [1]): AsyncGenerator<number> {
  yield* first;
  await new Promise<void>((_, reject) => {
    const fail = () => reject(new ConnectError("operation was aborted", Code.Canceled));
    if (signal.aborted) fail();
    else signal.addEventListener("abort", fail, { once: true });
  });
}

const alice: Identity = { userId: "alice", kind: "user" };

async function settle<T>(p: Promise<T>): Promise<T | unknown> {
  return p.catch((e: unknown) => e);
}

afterEach(() => vi.useRealTimers());

describe("StreamGuard", () => {
  it("refuses the identity's stream beyond the cap with ResourceExhausted, before the upstream is called", async () => {
    const guard = new StreamGuard({ maxPerIdentity: 2 });
    const callers = [new AbortController(), new AbortController()];
    const open = callers.map((ac) => guard.run(alice, ac.signal, (s) => idleUpstream(s)));
    for (const s of open) expect((await s.next()).value).toBe(1);
    expect(guard.openFor("alice")).toBe(2);

    let started = false;
    const third = guard.run(alice, new AbortController().signal, (s) => ((started = true), idleUpstream(s)));
    const err = await settle(third.next());
    expect(err).toBeInstanceOf(ConnectError);
    expect(err).toMatchObject({ code: Code.ResourceExhausted, rawMessage: expect.stringMatching(/at most 2 at once/) });
    expect(started).toBe(false);

    // Another identity has its own budget; a call without identity is not counted.
    const bob = guard.run({ userId: "bob", kind: "api_key" }, new AbortController().signal, (s) => idleUpstream(s));
    expect((await bob.next()).value).toBe(1);
    const anon = guard.run(undefined, new AbortController().signal, (s) => idleUpstream(s));
    expect((await anon.next()).value).toBe(1);

    // A caller that goes away frees its slot.
    callers[0]!.abort();
    await settle(open[0]!.next());
    expect(guard.openFor("alice")).toBe(1);
    const again = guard.run(alice, new AbortController().signal, (s) => idleUpstream(s));
    expect((await again.next()).value).toBe(1);
    // So does a consumer that stops reading early (return()).
    await again.return(undefined);
    await open[1]!.return(undefined);
    expect(guard.openFor("alice")).toBe(0);
    await bob.return(undefined);
    await anon.return(undefined);
  });

  it("ends the stream with Unauthenticated when the token expires, and cancels the upstream", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const guard = new StreamGuard({ maxPerIdentity: 4 });
    let upstreamSignal: AbortSignal | undefined;
    const stream = guard.run({ ...alice, expiresAtMs: Date.now() + 2_000 }, new AbortController().signal, (s) => {
      upstreamSignal = s;
      return idleUpstream(s);
    });
    expect((await stream.next()).value).toBe(1);
    const next = settle(stream.next());
    await vi.advanceTimersByTimeAsync(1_999);
    expect(upstreamSignal!.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    const err = await next;
    expect(upstreamSignal!.aborted).toBe(true);
    expect(err).toMatchObject({ code: Code.Unauthenticated, rawMessage: expect.stringMatching(/^token expired at /) });
    expect(guard.openFor("alice")).toBe(0);
  });

  it("refuses at once a token already expired, and waits out expiries beyond setTimeout's range", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const guard = new StreamGuard({ maxPerIdentity: 4 });
    const late = guard.run({ ...alice, expiresAtMs: Date.now() - 1 }, new AbortController().signal, (s) => idleUpstream(s));
    expect(await settle(late.next())).toMatchObject({ code: Code.Unauthenticated });

    const days = 40 * 86_400_000;
    const long = guard.run({ ...alice, expiresAtMs: Date.now() + days }, new AbortController().signal, (s) => idleUpstream(s));
    expect((await long.next()).value).toBe(1);
    const next = settle(long.next());
    await vi.advanceTimersByTimeAsync(days - 1_000);
    expect(guard.openFor("alice")).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await next).toMatchObject({ code: Code.Unauthenticated });
  });

  it("passes upstream errors through unchanged when the token has not expired", async () => {
    const guard = new StreamGuard({ maxPerIdentity: 1 });
    const stream = guard.run({ ...alice, expiresAtMs: Date.now() + 60_000 }, new AbortController().signal, async function* () {
      yield 1;
      throw new ConnectError("link not found", Code.NotFound);
    });
    expect((await stream.next()).value).toBe(1);
    expect(await settle(stream.next())).toMatchObject({ code: Code.NotFound });
    expect(guard.openFor("alice")).toBe(0);
  });
});
