/**
 * Web Push against the local push service, which verifies the VAPID JWT and decrypts the
 * aes128gcm body with the subscription's private key (RFC 8291, written independently of the
 * web-push library): what it decrypts is what was sent.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeVapidKeys, startWebPushServer, type WebPushServer } from "../../../testkit/push-endpoints.js";
import { testDevice, testNotification } from "../../../testkit/push-endpoints/fixtures.js";
import { WebPushProvider } from "./webpush.js";

const vapid = makeVapidKeys();
let server: WebPushServer;
let clock = Date.now();
let provider: WebPushProvider;

beforeAll(async () => {
  server = await startWebPushServer({ vapidPublicKey: vapid.publicKey });
  provider = new WebPushProvider({ vapid, timeoutMs: 5_000, maxSockets: 4, now: () => clock });
});
afterAll(async () => {
  await provider.close();
  await server.close();
});

describe("Web Push provider", () => {
  it("delivers an encrypted payload the subscription decrypts to exactly what was sent, with TTL, Urgency and Topic", async () => {
    const sub = server.subscribe();
    const n = testNotification(clock, { title: "bob ✓", body: "héllo alice", data: { channel_id: "c7", kind: "message" }, expireAtMs: clock + 600_000 });
    expect(await provider.send(testDevice("web-push", JSON.stringify(sub.json)), n)).toEqual({ kind: "sent" });
    const got = server.received.at(-1)!;
    expect(got.payload).toEqual({ notification_id: n.id, title: "bob ✓", body: "héllo alice", data: { channel_id: "c7", kind: "message" }, collapse_key: n.collapseKey });
    expect(got.target).toBe(sub.json.endpoint);
    expect(got.headers.ttl).toBe("600");
    expect(got.headers.urgency).toBe("high");
    expect(got.headers.topic).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(got.headers["content-encoding"]).toBe("aes128gcm");
  });

  it("gives a resend of one notification the same Topic (the push service replaces it) and another notification a different one", async () => {
    const sub = server.subscribe();
    const device = testDevice("web-push", JSON.stringify(sub.json));
    const n = testNotification(clock);
    await provider.send(device, n);
    await provider.send(device, n);
    await provider.send(device, testNotification(clock));
    const topics = server.received.filter((r) => r.target === sub.json.endpoint).map((r) => r.headers.topic);
    expect(topics[0]).toBe(topics[1]);
    expect(topics[2]).not.toBe(topics[0]);
  });

  it("signs one VAPID JWT per push-service origin and reuses it until it nears its 12 h expiry", async () => {
    const before = server.vapidTokens.length;
    for (let i = 0; i < 3; i++) {
      const sub = server.subscribe();
      expect((await provider.send(testDevice("web-push", JSON.stringify(sub.json)), testNotification(clock))).kind).toBe("sent");
    }
    const used = server.vapidTokens.slice(before);
    expect(used).toHaveLength(3);
    expect(new Set(used).size).toBe(1);
    clock += 11 * 3600 * 1000 + 1_000;
    const sub = server.subscribe();
    expect((await provider.send(testDevice("web-push", JSON.stringify(sub.json)), testNotification(clock))).kind).toBe("sent");
    expect(server.vapidTokens.at(-1)).not.toBe(used[0]);
    clock = Date.now();
  });

  it("answers dead-token for a subscription whose keys are not a P-256 point and auth secret (no request made)", async () => {
    const sub = server.subscribe();
    const before = server.vapidTokens.length;
    const junk = { endpoint: sub.json.endpoint, keys: { p256dh: "AAAA", auth: sub.json.keys.auth } };
    expect((await provider.send(testDevice("web-push", JSON.stringify(junk)), testNotification(clock))).kind).toBe("dead-token");
    expect(server.vapidTokens.length, "every request that reaches the server is counted here").toBe(before);
  });

  it("answers dead-token for a token that is not a subscription (no request made)", async () => {
    const before = server.received.length;
    const outcome = await provider.send(testDevice("web-push", '{"endpoint":"http://127.0.0.1:1/x"}'), testNotification(clock));
    expect(outcome.kind).toBe("dead-token");
    expect(server.received.length).toBe(before);
  });
});
