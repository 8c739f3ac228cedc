/**
 * FCM HTTP v1 against the local token endpoint and messages:send: the RS256 assertion is
 * verified with the service account's public key, the access token is fetched once and reused,
 * refreshed near expiry and after a 401.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fcmError, startFcmServer, type FcmServer, type TestServiceAccount } from "../../../testkit/push-endpoints.js";
import { testDevice, testNotification } from "../../../testkit/push-endpoints/fixtures.js";
import { FcmProvider } from "./fcm.js";

let server: FcmServer;
let account: TestServiceAccount;

beforeAll(async () => {
  server = await startFcmServer();
  account = server.newServiceAccount("chat-app");
});
afterAll(() => server.close());

function provider(now: () => number = Date.now): FcmProvider {
  return new FcmProvider({ serviceAccount: account.json, endpoint: server.url, timeoutMs: 5_000, maxSockets: 4, now });
}

describe("FCM provider", () => {
  it("sends the v1 message: notification, data with the id, collapse key and TTL, APNs collapse id and Web Push Topic", async () => {
    const now = Date.now();
    const p = provider(() => now);
    const n = testNotification(now, { collapseKey: "channel-7", data: { channel_id: "channel-7" }, expireAtMs: now + 90_000 });
    expect(await p.send(testDevice("fcm", "reg-token-1"), n)).toEqual({ kind: "sent" });
    await p.close();
    const got = server.received.at(-1)!;
    expect(got.headers.authorization).toBe(`Bearer ${server.issuedTokens.at(-1)}`);
    expect(got.payload).toMatchObject({
      token: "reg-token-1",
      notification: { title: n.title, body: n.body },
      data: { channel_id: "channel-7", notification_id: n.id },
      android: { collapse_key: "channel-7", ttl: "90s" },
      apns: { headers: { "apns-collapse-id": n.id } },
    });
    const topic = (got.payload as { webpush: { headers: { Topic: string } } }).webpush.headers.Topic;
    expect(topic).toMatch(/^[A-Za-z0-9_-]{1,32}$/);
  });

  it("uses the notification id as collapse key when the caller gave none", async () => {
    const p = provider();
    const n = testNotification(Date.now(), { collapseKey: "" });
    await p.send(testDevice("fcm", "reg-token-2"), n);
    await p.close();
    expect(server.received.at(-1)!.payload).toMatchObject({ android: { collapse_key: n.id } });
  });

  it("fetches one access token for many sends, concurrent ones included, and a new one shortly before it expires", async () => {
    // A 10 s token: the provider's clock can move past its refresh point (9 s) while the assertion
    // it then signs stays within the few minutes of skew the token endpoint accepts.
    server.setExpiresIn(10);
    let clock = Date.now();
    const p = provider(() => clock);
    const before = server.issuedTokens.length;
    const outcomes = await Promise.all(Array.from({ length: 5 }, (_, i) => p.send(testDevice("fcm", `burst-${i}`), testNotification(clock))));
    expect(outcomes.every((o) => o.kind === "sent")).toBe(true);
    clock += 8_500;
    await p.send(testDevice("fcm", "later"), testNotification(clock));
    expect(server.issuedTokens.length - before).toBe(1);
    clock += 1_000;
    expect((await p.send(testDevice("fcm", "after-expiry"), testNotification(clock))).kind).toBe("sent");
    expect(server.issuedTokens.length - before).toBe(2);
    expect(server.received.at(-1)!.headers.authorization).toBe(`Bearer ${server.issuedTokens.at(-1)}`);
    server.setExpiresIn(3600);
    await p.close();
  });

  it("on 401 UNAUTHENTICATED gets a new token once and resends", async () => {
    const p = provider();
    await p.send(testDevice("fcm", "warm"), testNotification(Date.now()));
    const before = server.issuedTokens.length;
    server.revokeTokens();
    const n = testNotification(Date.now());
    expect(await p.send(testDevice("fcm", "after-revoke"), n)).toEqual({ kind: "sent" });
    expect(server.issuedTokens.length - before).toBe(1);
    expect(server.received.filter((r) => r.notificationId === n.id)).toHaveLength(1);
    await p.close();
  });

  it("answers failed when the access token is refused twice (no loop)", async () => {
    const p = provider();
    const unauth = fcmError(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.");
    server.script.answer("stubborn", unauth, unauth, unauth);
    const outcome = await p.send(testDevice("fcm", "stubborn"), testNotification(Date.now()));
    expect(outcome.kind).toBe("failed");
    expect(server.received.filter((r) => r.target === "stubborn")).toHaveLength(2);
    await p.close();
  });

  it("answers failed when the token endpoint refuses the grant (unknown service account), with no message sent", async () => {
    const stranger = { ...account.json, client_email: "nobody@elsewhere.iam.gserviceaccount.com" };
    const p = new FcmProvider({ serviceAccount: stranger, endpoint: server.url, timeoutMs: 5_000, maxSockets: 2 });
    const before = server.received.length;
    const outcome = await p.send(testDevice("fcm", "x"), testNotification(Date.now()));
    expect(outcome).toMatchObject({ kind: "failed", reason: expect.stringContaining("invalid_grant") });
    expect(server.received.length).toBe(before);
    await p.close();
  });

  it("answers retry when the token endpoint fails with a 5xx", async () => {
    const p = provider();
    server.script.answer("token", { status: 503, body: "backend error" });
    expect((await p.send(testDevice("fcm", "y"), testNotification(Date.now()))).kind).toBe("retry");
    expect((await p.send(testDevice("fcm", "y"), testNotification(Date.now()))).kind).toBe("sent");
    await p.close();
  });
});
