import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ChatEventSchema, MessageSchema, type ChatEvent } from "../../../gen/switchboard/chat/v1/chat_pb.js";
import { DomainError } from "../../../platform/errors.js";
import { LocalDelivery } from "../adapters/local-delivery.js";
import { DeviceStream, replacedStream } from "./device-stream.js";

const msg = (id: number): ChatEvent =>
  create(ChatEventSchema, { eventId: BigInt(id), event: { case: "message", value: create(MessageSchema, { messageId: BigInt(id) }) } });

const stream = (over: Partial<ConstructorParameters<typeof DeviceStream>[0]> = {}) =>
  new DeviceStream({ userId: "u1", deviceId: "d1", outboxEvents: 8, keepAliveMs: 60_000, ...over });

async function collect(it: AsyncGenerator<ChatEvent>, n: number): Promise<ChatEvent[]> {
  const out: ChatEvent[] = [];
  for await (const ev of it) {
    out.push(ev);
    if (out.length === n) break;
  }
  return out;
}

describe("DeviceStream", () => {
  it("yields pushed events in order, including ones pushed while the reader waits", async () => {
    const s = stream();
    const ac = new AbortController();
    s.push(msg(1));
    s.push(msg(2));
    const reading = collect(s.events(ac.signal), 4);
    await new Promise((r) => setTimeout(r, 5));
    s.push(msg(3));
    s.push(msg(4));
    expect((await reading).map((e) => e.eventId)).toEqual([1n, 2n, 3n, 4n]);
    // The reader broke out of the loop: the stream is over and accepts nothing more.
    expect(s.ended).toBe(true);
    s.push(msg(5));
    expect(s.queued).toBe(0);
  });

  it("sends a keep_alive when idle for the interval", async () => {
    const s = stream({ keepAliveMs: 20 });
    const [ev] = await collect(s.events(new AbortController().signal), 1);
    expect(ev!.event.case).toBe("keepAlive");
    expect(ev!.time).toBeDefined();
  });

  it("ends as a slow consumer once the outbox is full, telling the client to Sync", async () => {
    let endedWith: DomainError | undefined;
    const s = stream({ outboxEvents: 3, onEnd: (_s, e) => (endedWith = e) });
    for (let i = 1; i <= 4; i++) s.push(msg(i));
    expect(s.ended).toBe(true);
    expect(endedWith?.kind).toBe("ResourceExhausted");
    expect(endedWith?.message).toMatch(/slow consumer.*Sync/);
    // Nothing is half-delivered: the reader gets the error, not a thinned stream.
    await expect(collect(s.events(new AbortController().signal), 1)).rejects.toMatchObject({ kind: "ResourceExhausted" });
  });

  it("ends with the given error while a reader waits (replaced stream)", async () => {
    const s = stream();
    const reading = collect(s.events(new AbortController().signal), 1);
    await new Promise((r) => setTimeout(r, 5));
    s.end(replacedStream());
    await expect(reading).rejects.toMatchObject({ kind: "Aborted" });
  });

  it("returns quietly when the call is cancelled", async () => {
    let ends = 0;
    const s = stream({ onEnd: () => (ends += 1) });
    const ac = new AbortController();
    const reading = collect(s.events(ac.signal), 10);
    s.push(msg(1));
    await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    expect((await reading).map((e) => e.eventId)).toEqual([1n]);
    expect(ends).toBe(1);
  });

  it("keeps memory bounded on a long stream (the consumed prefix is released)", async () => {
    const s = stream({ outboxEvents: 10 });
    const ac = new AbortController();
    const it = s.events(ac.signal);
    for (let i = 0; i < 5000; i++) {
      s.push(msg(i));
      const r = await it.next();
      expect(r.value?.eventId).toBe(BigInt(i));
    }
    expect(s.queued).toBe(0);
    expect((s as unknown as { queue: unknown[] }).queue.length).toBeLessThan(2100);
    ac.abort();
    await it.return(undefined);
  });
});

describe("LocalDelivery", () => {
  it("delivers to every device of the users named, except the one excluded, once per user", () => {
    const d = new LocalDelivery();
    const a1 = stream({ userId: "a", deviceId: "1" });
    const a2 = stream({ userId: "a", deviceId: "2" });
    const b1 = stream({ userId: "b", deviceId: "1" });
    const c1 = stream({ userId: "c", deviceId: "1" });
    for (const s of [a1, a2, b1, c1]) expect(d.attach(s)).toBeUndefined();
    expect(d.size()).toBe(4);
    d.deliver(["a", "b", "a"], msg(1), { userId: "a", deviceId: "2" });
    expect([a1.queued, a2.queued, b1.queued, c1.queued]).toEqual([1, 0, 1, 0]);
  });

  it("returns the replaced stream and detaches only the stream it was given", () => {
    const d = new LocalDelivery();
    const old = stream();
    const fresh = stream();
    d.attach(old);
    expect(d.attach(fresh)).toBe(old);
    expect(d.size()).toBe(1);
    d.detach(old); // the old stream's cleanup must not remove its replacement
    d.deliver(["u1"], msg(1));
    expect(fresh.queued).toBe(1);
    d.detach(fresh);
    expect(d.size()).toBe(0);
  });
});
