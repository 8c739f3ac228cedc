import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isDomainError } from "../errors.js";
import type { DurableMessage, EventBus } from "./event-bus.js";

export interface EventBusFixture {
  readonly bus: EventBus;
  cleanup(): Promise<void>;
}

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, f: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Declares the EventBus contract tests; run by every adapter's test file. */
export function eventBusConformance(makeBus: () => Promise<EventBusFixture>): void {
  describe("EventBus conformance", () => {
    let f: EventBusFixture;
    let ns: string;
    beforeEach(async () => {
      f = await makeBus();
      ns = `t${randomUUID().replace(/-/g, "").slice(0, 10)}`;
    });
    afterEach(async () => {
      await f.cleanup();
    });

    it("publish reaches exact and wildcard subscribers, not others", async () => {
      const got: string[] = [];
      const offs = [
        f.bus.subscribe(`${ns}.a.b`, (m) => void got.push(`exact:${m.subject}:${dec(m.data)}`)),
        f.bus.subscribe(`${ns}.*.b`, (m) => void got.push(`star:${m.subject}`)),
        f.bus.subscribe(`${ns}.>`, (m) => void got.push(`tail:${m.subject}`)),
        f.bus.subscribe(`${ns}.x`, (m) => void got.push(`other:${m.subject}`)),
      ];
      await sleep(50); // let subscriptions reach the server
      f.bus.publish(`${ns}.a.b`, enc("hi"));
      await until("3 deliveries", () => got.length >= 3);
      await sleep(50);
      expect(got.sort()).toEqual([`exact:${ns}.a.b:hi`, `star:${ns}.a.b`, `tail:${ns}.a.b`].sort());
      offs.forEach((off) => off());
    });

    it("unsubscribe stops delivery; a throwing handler does not break the bus", async () => {
      const got: string[] = [];
      const bad = f.bus.subscribe(`${ns}.e`, () => {
        throw new Error("boom");
      });
      const off = f.bus.subscribe(`${ns}.e`, (m) => void got.push(dec(m.data)));
      await sleep(50);
      f.bus.publish(`${ns}.e`, enc("1"));
      await until("first", () => got.length === 1);
      off();
      bad();
      await sleep(50);
      f.bus.publish(`${ns}.e`, enc("2"));
      await sleep(150);
      expect(got).toEqual(["1"]);
    });

    it("rejects invalid subjects with InvalidArgument", () => {
      for (const s of ["", "a..b", "a.>.b"]) {
        let err: unknown;
        try {
          f.bus.subscribe(s, () => {});
        } catch (e) {
          err = e;
        }
        expect(isDomainError(err) && err.kind).toBe("InvalidArgument");
      }
      expect(() => f.bus.publish(`${ns}.*`, enc("x"))).toThrow();
    });

    it("ensureStream is idempotent; publishDurable dedupes by msgId", async () => {
      const stream = `S_${ns}`;
      await f.bus.ensureStream(stream, [`${ns}.d.>`]);
      await f.bus.ensureStream(stream, [`${ns}.d.>`]);
      const a = await f.bus.publishDurable(`${ns}.d.1`, enc("one"), "m-1");
      const b = await f.bus.publishDurable(`${ns}.d.1`, enc("one"), "m-1");
      const c = await f.bus.publishDurable(`${ns}.d.2`, enc("two"), "m-2");
      expect(a.duplicate).toBe(false);
      expect(b).toEqual({ seq: a.seq, duplicate: true });
      expect(c.seq).toBe(a.seq + 1);
    });

    it("a durable publish also reaches plain subscribers of its subject", async () => {
      const stream = `S_${ns}`;
      await f.bus.ensureStream(stream, [`${ns}.live.>`]);
      const got: string[] = [];
      const off = f.bus.subscribe(`${ns}.live.*`, (m) => void got.push(`${m.subject}:${dec(m.data)}`));
      await sleep(50); // let the subscription reach the server
      await f.bus.publishDurable(`${ns}.live.1`, enc("one"), "live-1");
      await until("the live copy of a durable publish", () => got.length >= 1);
      off();
      expect(got).toEqual([`${ns}.live.1:one`]);
    });

    it("publishDurable to a subject no stream captures is FailedPrecondition", async () => {
      const e = await f.bus.publishDurable(`${ns}.nostream`, enc("x"), "m").then(() => undefined, (err: unknown) => err);
      expect(isDomainError(e) && e.kind).toBe("FailedPrecondition");
    });

    it("consume on an unknown stream is NotFound", async () => {
      const e = await f.bus.consume(`NOPE_${ns}`, "d", () => {}).then(() => undefined, (err: unknown) => err);
      expect(isDomainError(e) && e.kind).toBe("NotFound");
    });

    it("consume delivers stored messages in order from the start; acked ones are not redelivered after restart", async () => {
      const stream = `S_${ns}`;
      await f.bus.ensureStream(stream, [`${ns}.q.>`]);
      for (let i = 1; i <= 3; i++) await f.bus.publishDurable(`${ns}.q.x`, enc(`m${i}`), `id-${i}`);
      const got: string[] = [];
      const c1 = await f.bus.consume(stream, "worker", (m) => {
        got.push(dec(m.data));
        m.ack();
      });
      await until("3 messages", () => got.length === 3);
      expect(got).toEqual(["m1", "m2", "m3"]);
      await c1.stop();
      await f.bus.publishDurable(`${ns}.q.x`, enc("m4"), "id-4");
      const later: string[] = [];
      const c2 = await f.bus.consume(stream, "worker", (m) => {
        later.push(dec(m.data));
        m.ack();
      });
      await until("m4", () => later.length >= 1);
      await sleep(200);
      expect(later).toEqual(["m4"]);
      await c2.stop();
    });

    it("an ack made in the same turn as stop() still counts (settles are batched, never dropped)", async () => {
      const stream = `SA_${ns}`;
      await f.bus.ensureStream(stream, [`${ns}.sa.>`]);
      await f.bus.publishDurable(`${ns}.sa.x`, enc("only"), "sa-1");
      let acked!: () => void;
      const ackedNow = new Promise<void>((r) => (acked = r));
      const c1 = await f.bus.consume(stream, "w", (m) => {
        m.ack();
        acked();
      });
      // Resumes in a microtask right after the ack: before any batched settle could have left.
      await ackedNow;
      await c1.stop();
      const again: string[] = [];
      const c2 = await f.bus.consume(stream, "w", (m) => {
        again.push(dec(m.data));
        m.ack();
      }, { ackWaitMs: 1_000 });
      await sleep(1_500);
      expect(again).toEqual([]);
      await c2.stop();
    });

    it("consumerInfo: ack floor, pending, unacked and the oldest unacked message's time", async () => {
      const info = f.bus.consumerInfo?.bind(f.bus);
      if (!info) return; // optional in the port
      const stream = `L_${ns}`;
      await f.bus.ensureStream(stream, [`${ns}.l.>`]);
      const t0 = Date.now();
      for (let i = 1; i <= 4; i++) await f.bus.publishDurable(`${ns}.l.x`, enc(`m${i}`), `id-${i}`);
      const seen: number[] = [];
      // Acks every message but the second: the floor stops at 1, the second stays unacked.
      const c = await f.bus.consume(
        stream,
        "lagging",
        (m) => {
          seen.push(m.seq);
          if (m.seq !== 2) m.ack();
        },
        { ackWaitMs: 60_000 },
      );
      await until("4 delivered", () => seen.length >= 4);
      let lag = await info(stream, "lagging");
      for (let i = 0; i < 50 && lag.ackFloorSeq !== 1; i++) {
        await sleep(20);
        lag = await info(stream, "lagging");
      }
      expect(lag).toMatchObject({ ackFloorSeq: 1, pending: 0, ackPending: 1 });
      expect(lag.oldestUnacked!.getTime()).toBeGreaterThanOrEqual(t0 - 1_000);
      expect(lag.oldestUnacked!.getTime()).toBeLessThanOrEqual(Date.now());
      await c.stop();
      // Published while nobody consumes: pending (not yet delivered).
      await f.bus.publishDurable(`${ns}.l.x`, enc("m5"), "id-5");
      for (let i = 0; i < 50 && (await info(stream, "lagging")).pending !== 1; i++) await sleep(20);
      expect((await info(stream, "lagging")).pending).toBe(1);
      const err = await info(stream, "nobody").catch((e: unknown) => e);
      expect(isDomainError(err) && err.kind).toBe("NotFound");
    });

    it("redelivers on nak and on a throwing handler, counting deliveries", async () => {
      const stream = `S_${ns}`;
      await f.bus.ensureStream(stream, [`${ns}.r.>`]);
      await f.bus.publishDurable(`${ns}.r.1`, enc("nak-me"), "r1");
      await f.bus.publishDurable(`${ns}.r.2`, enc("throw-me"), "r2");
      const seen: { body: string; n: number }[] = [];
      const c = await f.bus.consume(stream, "retry", (m: DurableMessage) => {
        const body = dec(m.data);
        seen.push({ body, n: m.deliveryCount });
        if (m.deliveryCount === 1 && body === "nak-me") return m.nak();
        if (m.deliveryCount === 1 && body === "throw-me") throw new Error("handler failed");
        m.ack();
      });
      await until("both redelivered", () => seen.filter((s) => s.n === 2).length === 2);
      await sleep(200);
      expect(seen.filter((s) => s.body === "nak-me").map((s) => s.n)).toEqual([1, 2]);
      expect(seen.filter((s) => s.body === "throw-me").map((s) => s.n)).toEqual([1, 2]);
      await c.stop();
    });

    it("redelivers when neither ack nor nak arrives within ackWait", async () => {
      const stream = `S_${ns}`;
      await f.bus.ensureStream(stream, [`${ns}.w.>`]);
      await f.bus.publishDurable(`${ns}.w.1`, enc("slow"), "w1");
      const times: number[] = [];
      const c = await f.bus.consume(
        stream,
        "slow",
        (m) => {
          times.push(Date.now());
          if (m.deliveryCount >= 2) m.ack();
        },
        { ackWaitMs: 1_000 },
      );
      await until("redelivery", () => times.length >= 2, 10_000);
      expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(800);
      await sleep(1_300);
      expect(times).toHaveLength(2);
      await c.stop();
    });
  });
}
