/**
 * What every HTTP provider does before and around the request: user-supplied targets refused by
 * checkTarget never get a connection; a provider that is down or never answers is a retry.
 */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPushEndpoints, type PushEndpoints } from "../../../testkit/push-endpoints.js";
import { apnsDeviceToken, testDevice, testNotification } from "../../../testkit/push-endpoints/fixtures.js";
import { ApnsProvider } from "./apns.js";
import { FcmProvider } from "./fcm.js";
import type { PushProvider } from "./provider.js";
import { WebhookProvider } from "./webhook.js";
import { WebPushProvider } from "./webpush.js";

let endpoints: PushEndpoints;
beforeAll(async () => {
  endpoints = await startPushEndpoints();
});
afterAll(() => endpoints.close());

/** A TCP server that accepts and never answers; connections counted. */
async function blackHole(): Promise<{ url: string; connections: () => number; close: () => Promise<void> }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    connections++;
    sockets.add(s);
    s.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    connections: () => connections,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<string> {
  const hole = await blackHole();
  await hole.close();
  return hole.url;
}

describe("checkTarget", () => {
  it("refuses webhook and Web Push targets before any connection: failed, with the reason", async () => {
    const seen: string[] = [];
    const checkTarget = async (url: URL): Promise<string | undefined> => {
      seen.push(url.href);
      return "loopback address";
    };
    const { credentials: c } = endpoints;
    const webhook = new WebhookProvider({ secret: c.webhookKey, timeoutMs: 2_000, maxSockets: 2, checkTarget });
    const webPush = new WebPushProvider({ vapid: c.vapid, timeoutMs: 2_000, maxSockets: 2, checkTarget });
    const hook = endpoints.webhook.hook("refused");
    const sub = endpoints.webPush.subscribe();
    const n = testNotification(Date.now());
    expect(await webhook.send(testDevice("webhook", hook), n)).toEqual({ kind: "failed", reason: "target not allowed: loopback address" });
    expect(await webPush.send(testDevice("web-push", JSON.stringify(sub.json)), n)).toEqual({ kind: "failed", reason: "target not allowed: loopback address" });
    expect(seen).toEqual([hook, sub.json.endpoint]);
    expect(endpoints.webhook.received.filter((r) => r.target === hook)).toEqual([]);
    expect(endpoints.webPush.received.filter((r) => r.target === sub.json.endpoint)).toEqual([]);
    expect(endpoints.webPush.vapidTokens.length, "not even an unauthorised request reached the push service").toBe(0);
    await Promise.all([webhook.close(), webPush.close()]);
  });

  it("lets an allowed target through", async () => {
    const webhook = new WebhookProvider({ secret: endpoints.credentials.webhookKey, timeoutMs: 2_000, maxSockets: 2, checkTarget: async () => undefined });
    expect((await webhook.send(testDevice("webhook", endpoints.webhook.hook("allowed")), testNotification(Date.now()))).kind).toBe("sent");
    await webhook.close();
  });

  it("refuses a target that is not http(s) without asking checkTarget", async () => {
    let asked = 0;
    const webhook = new WebhookProvider({ secret: endpoints.credentials.webhookKey, timeoutMs: 2_000, maxSockets: 2, checkTarget: async () => (asked++, undefined) });
    expect((await webhook.send(testDevice("webhook", "file:///etc/passwd"), testNotification(Date.now()))).kind).toBe("failed");
    expect(asked).toBe(0);
    await webhook.close();
  });
});

describe("connections", () => {
  it("reuses keep-alive sockets and never opens more than maxSockets to one origin", async () => {
    const { startWebhookServer } = await import("../../../testkit/push-endpoints.js");
    const receiver = await startWebhookServer({ key: endpoints.credentials.webhookKey });
    const p = new WebhookProvider({ secret: endpoints.credentials.webhookKey, timeoutMs: 5_000, maxSockets: 3 });
    const hook = receiver.hook("pool");
    const burst = await Promise.all(Array.from({ length: 30 }, () => p.send(testDevice("webhook", hook), testNotification(Date.now()))));
    expect(burst.every((o) => o.kind === "sent")).toBe(true);
    for (let i = 0; i < 5; i++) await p.send(testDevice("webhook", hook), testNotification(Date.now()));
    expect(receiver.received).toHaveLength(35);
    expect(receiver.connections()).toBe(3);
    await p.close();
    await receiver.close();
  });
});

describe("network errors and timeouts are retries", () => {
  const providersAt = (url: string, timeoutMs: number): PushProvider[] => {
    const { credentials: c } = endpoints;
    return [
      new WebhookProvider({ secret: c.webhookKey, timeoutMs, maxSockets: 2 }),
      new WebPushProvider({ vapid: c.vapid, timeoutMs, maxSockets: 2 }),
      new FcmProvider({ serviceAccount: { ...c.serviceAccount.json, token_uri: `${url}/token` }, endpoint: url, timeoutMs, maxSockets: 2 }),
      new ApnsProvider({ key: c.apnsKey.p8, keyId: c.apnsKey.keyId, teamId: c.apnsKey.teamId, topic: "t", endpoint: url, timeoutMs }),
    ];
  };
  const tokenFor = (p: PushProvider, url: string): string => {
    switch (p.platform) {
      case "webhook":
        return `${url}/hooks/x`;
      case "web-push":
        return JSON.stringify({ ...endpoints.webPush.subscribe().json, endpoint: `${url}/push/x` });
      case "fcm":
        return "reg";
      case "apns":
        return apnsDeviceToken();
    }
  };

  it("connection refused (the provider's server is down) -> retry, for every provider", async () => {
    const url = await closedPort();
    for (const p of providersAt(url, 2_000)) {
      const outcome = await p.send(testDevice(p.platform, tokenFor(p, url)), testNotification(Date.now()));
      expect(outcome, p.platform).toMatchObject({ kind: "retry", reason: expect.stringMatching(/ECONNREFUSED/) });
      await p.close?.();
    }
  });

  it("a server that accepts and never answers -> retry after the request timeout, for every provider", async () => {
    const hole = await blackHole();
    for (const p of providersAt(hole.url, 300)) {
      const started = Date.now();
      const outcome = await p.send(testDevice(p.platform, tokenFor(p, hole.url)), testNotification(Date.now()));
      expect(outcome, p.platform).toMatchObject({ kind: "retry", reason: expect.stringContaining("no answer within 300 ms") });
      expect(Date.now() - started, p.platform).toBeLessThan(3_000);
      await p.close?.();
    }
    expect(hole.connections()).toBe(4);
    await hole.close();
  });

  it("APNs: a silent HTTP/2 connection is given up after a timeout; the next send connects anew", async () => {
    const hole = await blackHole();
    const { credentials: c } = endpoints;
    const p = new ApnsProvider({ key: c.apnsKey.p8, keyId: c.apnsKey.keyId, teamId: c.apnsKey.teamId, topic: "t", endpoint: hole.url, timeoutMs: 200 });
    expect((await p.send(testDevice("apns", apnsDeviceToken()), testNotification(Date.now()))).kind).toBe("retry");
    expect((await p.send(testDevice("apns", apnsDeviceToken()), testNotification(Date.now()))).kind).toBe("retry");
    expect(hole.connections()).toBe(2);
    await p.close();
    await hole.close();
  });

  it("the local server going away between sends -> retry (keep-alive socket to a dead server)", async () => {
    const { credentials: c } = endpoints;
    const { startWebhookServer } = await import("../../../testkit/push-endpoints.js");
    const receiver = await startWebhookServer({ key: c.webhookKey });
    const p = new WebhookProvider({ secret: c.webhookKey, timeoutMs: 2_000, maxSockets: 2 });
    const hook = receiver.hook("a");
    expect((await p.send(testDevice("webhook", hook), testNotification(Date.now()))).kind).toBe("sent");
    await receiver.close();
    expect((await p.send(testDevice("webhook", hook), testNotification(Date.now()))).kind).toBe("retry");
    await p.close();
  });
});
