import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  ChatEventSchema,
  MessageSchema,
  RelayFrameSchema,
  RelayResponseSchema,
  SubscribeResponseSchema,
  type RelayFrame,
  type RelayRequest,
  type RelayResponse,
  type SubscribeResponse,
} from "../gen/switchboard/chat/v1/chat_pb.js";
import { keepAliveEvent } from "../services/chat/live/device-stream.js";
import { ChatRelay } from "./chat-relay.js";
import { isEncoded, type RelayedResponse } from "./relayed-response.js";

const events = (...ids: number[]) => ({
  events: ids.map((id) =>
    id === 0 ? keepAliveEvent() : create(ChatEventSchema, { eventId: BigInt(id), event: { case: "message", value: create(MessageSchema, { messageId: BigInt(id) }) } }),
  ),
});
const response = (streamId: bigint, ...ids: number[]): RelayFrame =>
  create(RelayFrameSchema, { streamId, frame: { case: "response", value: events(...ids) } });
/** As a chat server sends it to a stream opened with accept_encoded. */
const encoded = (streamId: bigint, ...ids: number[]): RelayFrame => {
  const value = events(...ids);
  return create(RelayFrameSchema, {
    streamId,
    frame: { case: "encoded", value: { response: toBinary(SubscribeResponseSchema, create(SubscribeResponseSchema, value)), events: value.events.length } },
  });
};
const end = (streamId: bigint, code: number, message = "", retryAfterMs?: bigint): RelayFrame =>
  create(RelayFrameSchema, { streamId, frame: { case: "end", value: { code, message, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) } } });

/** A chat server stand-in: records the requests, sends what the test tells it to, fails on demand. */
function fakeServer(readsRequests = true) {
  const requests: RelayRequest[] = [];
  let send: ((res: RelayResponse) => void) | undefined;
  let fail: ((e: unknown) => void) | undefined;
  const pending: RelayResponse[] = [];
  let cancelled = false;
  const call = (reqs: AsyncIterable<RelayRequest>, options: { signal?: AbortSignal }): AsyncIterable<RelayResponse> => {
    if (readsRequests) {
      void (async () => {
        for await (const r of reqs) requests.push(r);
      })();
    }
    options.signal?.addEventListener("abort", () => {
      cancelled = true;
      fail?.(new ConnectError("cancelled", Code.Canceled));
    });
    return (async function* () {
      for (;;) {
        if (pending.length > 0) {
          yield pending.shift()!;
          continue;
        }
        const next = await new Promise<RelayResponse>((resolve, reject) => {
          send = resolve;
          fail = reject;
        });
        yield next;
      }
    })();
  };
  return {
    call,
    requests,
    get cancelled() {
      return cancelled;
    },
    frames(...frames: RelayFrame[]) {
      const res = create(RelayResponseSchema, { frames });
      if (send) {
        const s = send;
        send = undefined;
        s(res);
      } else pending.push(res);
    },
    die() {
      fail?.(new ConnectError("Connection dropped", Code.Unavailable));
    },
  };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

/** Reads a relayed stream in the background, keeping everything it got and how it ended. */
function client(it: AsyncGenerator<SubscribeResponse>) {
  const got: SubscribeResponse[] = [];
  let ended: ConnectError | "ok" | undefined;
  const done = (async () => {
    try {
      for await (const r of it) got.push(r);
      ended = "ok";
    } catch (e) {
      ended = ConnectError.from(e);
    }
  })();
  return {
    got,
    done,
    get ended() {
      return ended;
    },
    ids: () => got.flatMap((r) => r.events.map((e) => (e.event.case === "keepAlive" ? "keepAlive" : e.eventId))),
  };
}

describe("ChatRelay (the gateway's end of Relay)", () => {
  it("opens each stream on the one call with its device and assertion, and hands each client only its own frames", async () => {
    const server = fakeServer();
    const relay = new ChatRelay({ call: server.call, keepAliveMs: 60_000, outboxEvents: 100 });
    const a = client(relay.subscribe("phone", "assertion-a"));
    const b = client(relay.subscribe("laptop", "assertion-b"));
    await tick();
    expect(server.requests.map((r) => [r.streamId, r.frame.case, r.frame.case === "open" ? r.frame.value : undefined])).toEqual([
      [1n, "open", expect.objectContaining({ deviceId: "phone", identityAssertion: "assertion-a" })],
      [2n, "open", expect.objectContaining({ deviceId: "laptop", identityAssertion: "assertion-b" })],
    ]);
    server.frames(response(1n, 0), response(2n, 0), response(1n, 5, 6), response(2n, 9));
    await tick();
    expect(a.ids()).toEqual(["keepAlive", 5n, 6n]);
    expect(b.ids()).toEqual(["keepAlive", 9n]);
    expect(relay.size).toBe(2);
  });

  it("ends a stream with the chat server's status and retry hint, marked as the server's answer", async () => {
    const server = fakeServer();
    const relay = new ChatRelay({ call: server.call, keepAliveMs: 60_000, outboxEvents: 100 });
    const a = client(relay.subscribe("phone", "x"));
    const b = client(relay.subscribe("laptop", "x"));
    await tick();
    server.frames(end(1n, Code.Unavailable, "chat server is shutting down", 2_500n), end(2n, 0));
    await Promise.all([a.done, b.done]);
    const e = a.ended as ConnectError;
    expect([e.code, e.rawMessage, e.metadata.get("retry-after-ms"), e.metadata.get("retry-after")]).toEqual([
      Code.Unavailable,
      "chat server is shutting down",
      "2500",
      "3",
    ]);
    expect(b.ended).toBe("ok");
    // The server ended them: nothing to tell it.
    expect(server.requests.filter((r) => r.frame.case === "close")).toEqual([]);
    expect(relay.size).toBe(0);
  });

  it("a client that leaves has its stream closed on the chat server; frames still in flight for it are dropped", async () => {
    const server = fakeServer();
    const relay = new ChatRelay({ call: server.call, keepAliveMs: 60_000, outboxEvents: 100 });
    const ac = new AbortController();
    const a = client(relay.subscribe("phone", "x", ac.signal));
    const b = client(relay.subscribe("laptop", "x"));
    await tick();
    server.frames(response(1n, 0), response(2n, 0));
    await tick();
    ac.abort();
    await a.done;
    expect(a.ended).toBe("ok");
    await tick();
    expect(server.requests.map((r) => [r.streamId, r.frame.case])).toEqual([
      [1n, "open"],
      [2n, "open"],
      [1n, "close"],
    ]);
    server.frames(response(1n, 7), response(2n, 8));
    await tick();
    expect(a.ids()).toEqual(["keepAlive"]);
    expect(b.ids()).toEqual(["keepAlive", 8n]);
  });

  it("a client that stops reading ends as a slow consumer past its outbox, the chat server is told, the others go on", async () => {
    const server = fakeServer();
    const relay = new ChatRelay({ call: server.call, keepAliveMs: 60_000, outboxEvents: 3 });
    const stuck = relay.subscribe("phone", "x");
    const first = stuck.next(); // reads the attached notice, then never again
    const b = client(relay.subscribe("laptop", "x"));
    await tick();
    server.frames(response(1n, 0), response(2n, 0));
    await first;
    server.frames(response(1n, 1, 2), response(1n, 3, 4), response(2n, 5));
    await tick();
    await expect(stuck.next()).rejects.toMatchObject({ code: Code.ResourceExhausted, rawMessage: expect.stringMatching(/^slow consumer: more than 3 events/) as unknown });
    expect(server.requests.filter((r) => r.frame.case === "close").map((r) => r.streamId)).toEqual([1n]);
    expect(b.ids()).toEqual(["keepAlive", 5n]);
    expect(relay.size).toBe(1);
  });

  it("asks for serialized responses, hands them on as they came (decoded only for a generator's reader), and bounds the outbox by their events", async () => {
    const server = fakeServer();
    const relay = new ChatRelay({ call: server.call, keepAliveMs: 60_000, outboxEvents: 3 });
    const fed = relay.open("phone", "x");
    const decoded = client(relay.subscribe("laptop", "x"));
    const stuck = relay.open("tablet", "x");
    await tick();
    expect(server.requests.map((r) => r.frame.case === "open" && r.frame.value.acceptEncoded)).toEqual([true, true, true]);
    // An older chat server answers decoded: both forms are taken.
    const fedFrames = [encoded(1n, 0), encoded(1n, 5, 6)];
    server.frames(fedFrames[0]!, response(2n, 0), encoded(3n, 0), fedFrames[1]!, encoded(2n, 7));
    await tick();
    const taken: RelayedResponse[] = [];
    for (let r = fed.take(); r !== undefined; r = fed.take()) taken.push(r);
    // The chat server's bytes, untouched, with their event counts.
    expect(taken.map((r) => (isEncoded(r) ? [r.eventCount, Buffer.from(r.encoded).toString("hex")] : r))).toEqual(
      fedFrames.map((f) => {
        const v = f.frame.value as { response: Uint8Array; events: number };
        return [v.events, Buffer.from(v.response).toString("hex")];
      }),
    );
    expect(decoded.ids()).toEqual(["keepAlive", 7n]);
    // Serialized responses count by their events: 1 + 2 + 1 > 3 ends the stream that stopped taking them.
    server.frames(encoded(3n, 1, 2), encoded(3n, 3));
    await tick();
    expect(stuck.ended?.error).toMatchObject({ code: Code.ResourceExhausted, rawMessage: expect.stringMatching(/^slow consumer: more than 3 events/) as unknown });
    expect(server.requests.filter((r) => r.frame.case === "close").map((r) => r.streamId)).toEqual([3n]);
    fed.close();
  });

  it("keeps idle attached streams alive itself, about every keepAliveMs, and not before the stream is attached", async () => {
    const server = fakeServer();
    const relay = new ChatRelay({ call: server.call, keepAliveMs: 200, outboxEvents: 100 });
    const a = client(relay.subscribe("phone", "x"));
    const b = client(relay.subscribe("laptop", "x"));
    await tick();
    server.frames(response(1n, 0));
    const started = Date.now();
    await new Promise((r) => setTimeout(r, 1_050));
    const elapsed = Date.now() - started;
    const keepAlives = a.ids().filter((x) => x === "keepAlive").length - 1;
    // One per 160-200 ms of idleness (ticks a fifth of the interval apart); a busy box only delays timers.
    expect(keepAlives).toBeGreaterThanOrEqual(2);
    expect(keepAlives).toBeLessThanOrEqual(Math.ceil(elapsed / 160));
    expect(b.got).toEqual([]);
    relay.close();
  });

  it("when the call fails every stream ends with UNAVAILABLE and retry now; a new stream is refused the same way", async () => {
    const server = fakeServer();
    let ended = 0;
    const relay = new ChatRelay({ call: server.call, keepAliveMs: 60_000, outboxEvents: 100, onEnd: () => ended++ });
    const a = client(relay.subscribe("phone", "x"));
    const b = client(relay.subscribe("laptop", "x"));
    await tick();
    server.frames(response(1n, 0));
    await tick();
    server.die();
    await Promise.all([a.done, b.done]);
    for (const c of [a, b]) {
      const e = c.ended as ConnectError;
      expect([e.code, e.rawMessage, e.metadata.get("retry-after-ms")]).toEqual([
        Code.Unavailable,
        "chat server connection lost: reconnect (with backoff) and Sync from your cursor",
        "0",
      ]);
    }
    expect(relay.ended).toBe(true);
    expect(ended).toBe(1);
    const late = client(relay.subscribe("tablet", "x"));
    await late.done;
    expect((late.ended as ConnectError).code).toBe(Code.Unavailable);
  });

  it("close() ends the streams with UNAVAILABLE (connection closed) and cancels the call", async () => {
    const server = fakeServer();
    const relay = new ChatRelay({ call: server.call, keepAliveMs: 60_000, outboxEvents: 100 });
    const a = client(relay.subscribe("phone", "x"));
    await tick();
    relay.close();
    await a.done;
    expect((a.ended as ConnectError).rawMessage).toBe("chat server connection closed: reconnect (with backoff) and Sync from your cursor");
    await tick();
    expect(server.cancelled).toBe(true);
  });

  it("gives the call up when the chat server takes no requests while clients come and go", async () => {
    const server = fakeServer(false);
    const relay = new ChatRelay({ call: server.call, keepAliveMs: 60_000, outboxEvents: 100, maxPendingRequests: 10 });
    const clients = [];
    for (let i = 0; i < 11; i++) {
      const c = client(relay.subscribe(`d${i}`, "x"));
      clients.push(c);
      await tick();
    }
    await Promise.all(clients.map((c) => c.done));
    expect(clients.map((c) => (c.ended as ConnectError).code)).toEqual(Array(11).fill(Code.Unavailable));
    expect(relay.ended).toBe(true);
    expect(server.cancelled).toBe(true);
  });
});
