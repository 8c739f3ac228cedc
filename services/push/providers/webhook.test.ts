/** The signed webhook against a local receiver that verifies Standard Webhooks signatures. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeWebhookSecret, startWebhookServer, type WebhookServer } from "../../../testkit/push-endpoints.js";
import { testDevice, testNotification } from "../../../testkit/push-endpoints/fixtures.js";
import { WebhookProvider } from "./webhook.js";

const secret = makeWebhookSecret();
let server: WebhookServer;

beforeAll(async () => {
  server = await startWebhookServer({ key: secret.key });
});
afterAll(() => server.close());

describe("webhook provider", () => {
  it("POSTs the notification signed over id.timestamp.body; the receiver verifies it", async () => {
    const provider = new WebhookProvider({ secret: secret.key, timeoutMs: 5_000, maxSockets: 2 });
    const hook = server.hook("alice");
    const n = testNotification(Date.now(), { data: { channel_id: "c9" } });
    expect(await provider.send(testDevice("webhook", hook), n)).toEqual({ kind: "sent" });
    await provider.close();
    expect(server.refused).toEqual([]);
    const got = server.received.at(-1)!;
    expect(got.target).toBe(hook);
    expect(got.headers["webhook-id"]).toBe(n.id);
    expect(Math.abs(Number(got.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(5);
    expect(got.payload).toEqual({
      notification_id: n.id,
      title: n.title,
      body: n.body,
      data: { channel_id: "c9" },
      collapse_key: n.collapseKey,
      expire_time: new Date(n.expireAtMs).toISOString(),
    });
  });

  it("is refused by the receiver when signed with another secret (the signature is really checked)", async () => {
    const provider = new WebhookProvider({ secret: makeWebhookSecret().key, timeoutMs: 5_000, maxSockets: 2 });
    const outcome = await provider.send(testDevice("webhook", server.hook("mallory")), testNotification(Date.now()));
    await provider.close();
    expect(outcome.kind).toBe("failed");
    expect(server.refused.at(-1)).toBe("no valid v1 signature");
  });
});
