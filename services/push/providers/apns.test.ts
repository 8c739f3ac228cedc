/**
 * APNs against the local h2c server, which verifies the ES256 provider token with the key's
 * public key, the topic and the path token.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apnsError, makeApnsKey, startApnsServer, type ApnsServer } from "../../../testkit/push-endpoints.js";
import { apnsDeviceToken, testDevice, testNotification } from "../../../testkit/push-endpoints/fixtures.js";
import { ApnsProvider } from "./apns.js";

const key = makeApnsKey();
const topic = "dev.switchboard.chat";
let server: ApnsServer;

beforeAll(async () => {
  server = await startApnsServer({ key, topic });
});
afterAll(() => server.close());

const provider = (now: () => number = Date.now): ApnsProvider =>
  new ApnsProvider({ key: key.p8, keyId: key.keyId, teamId: key.teamId, topic, endpoint: server.url, timeoutMs: 5_000, now });

describe("APNs provider", () => {
  it("sends an alert with the documented headers; ids derived from the notification id", async () => {
    const p = provider();
    const token = apnsDeviceToken();
    const n = testNotification(Date.now(), { collapseKey: "channel-3" });
    expect(await p.send(testDevice("apns", token), n)).toEqual({ kind: "sent" });
    await p.send(testDevice("apns", token), n);
    await p.close();
    const [first, resend] = server.received.filter((r) => r.target === token);
    expect(first!.headers).toMatchObject({
      ":path": `/3/device/${token}`,
      "apns-topic": topic,
      "apns-push-type": "alert",
      "apns-priority": "10",
      "apns-expiration": String(Math.floor(n.expireAtMs / 1000)),
      "apns-collapse-id": n.id,
    });
    expect(first!.headers["apns-id"]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(resend!.headers["apns-id"], "a resend carries the same apns-id").toBe(first!.headers["apns-id"]);
    expect(first!.payload).toEqual({ aps: { alert: { title: n.title, body: n.body }, sound: "default", "thread-id": "channel-3" }, notification_id: n.id, data: n.data });
  });

  it("hashes a notification id longer than 64 bytes into apns-collapse-id", async () => {
    const p = provider();
    const token = apnsDeviceToken();
    const n = testNotification(Date.now(), { id: "x".repeat(100) });
    expect((await p.send(testDevice("apns", token), n)).kind).toBe("sent");
    await p.close();
    const collapse = String(server.received.at(-1)!.headers["apns-collapse-id"]);
    expect(Buffer.byteLength(collapse)).toBeLessThanOrEqual(64);
    expect(collapse).not.toBe(n.id);
  });

  it("reuses one provider token and one HTTP/2 connection for many sends, and signs a new token after 50 minutes", async () => {
    let clock = Date.now();
    const p = provider(() => clock);
    const tokensBefore = server.providerTokens.length;
    const sessionsBefore = server.sessions();
    const outcomes = await Promise.all(Array.from({ length: 5 }, () => p.send(testDevice("apns", apnsDeviceToken()), testNotification(clock))));
    expect(outcomes.every((o) => o.kind === "sent")).toBe(true);
    const used = server.providerTokens.slice(tokensBefore);
    expect(new Set(used).size).toBe(1);
    expect(server.sessions() - sessionsBefore).toBe(1);
    clock += 50 * 60 * 1000 + 1_000;
    // The local server checks iat against real time, so the new token must still be accepted: sign with a clock at most 1 h ahead.
    expect((await p.send(testDevice("apns", apnsDeviceToken()), testNotification(clock))).kind).toBe("sent");
    expect(server.providerTokens.at(-1)).not.toBe(used[0]);
    await p.close();
  });

  it("after ExpiredProviderToken signs a new token for the next send", async () => {
    const p = provider();
    const token = apnsDeviceToken();
    server.script.answer(token, apnsError(403, "ExpiredProviderToken"));
    expect((await p.send(testDevice("apns", token), testNotification(Date.now()))).kind).toBe("retry");
    const stale = server.providerTokens.at(-1);
    expect((await p.send(testDevice("apns", token), testNotification(Date.now()))).kind).toBe("sent");
    expect(server.providerTokens.at(-1)).not.toBe(stale);
    await p.close();
  });

  it("opens a new connection after the server's GOAWAY", async () => {
    const p = provider();
    expect((await p.send(testDevice("apns", apnsDeviceToken()), testNotification(Date.now()))).kind).toBe("sent");
    const sessionsBefore = server.sessions();
    server.goaway();
    await new Promise((r) => setTimeout(r, 50));
    expect((await p.send(testDevice("apns", apnsDeviceToken()), testNotification(Date.now()))).kind).toBe("sent");
    expect(server.sessions()).toBe(sessionsBefore + 1);
    await p.close();
  });

  it("is refused by the server when the token is signed with another key (the signature is really checked)", async () => {
    const other = makeApnsKey();
    const p = new ApnsProvider({ key: other.p8, keyId: key.keyId, teamId: key.teamId, topic, endpoint: server.url, timeoutMs: 5_000 });
    expect(await p.send(testDevice("apns", apnsDeviceToken()), testNotification(Date.now()))).toMatchObject({ kind: "failed", reason: "apns 403 InvalidProviderToken" });
    await p.close();
  });
});
