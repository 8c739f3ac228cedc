/**
 * Issue 14 acceptance, end to end on both engines (push-delivery.test.ts memory,
 * push-delivery.int.test.ts cluster): a message to a user offline on every device reaches each of
 * their registered devices as a push, through the local Web Push service (which decrypts it) and
 * the local webhook receiver (which checks its signature); a user online on any device gets no
 * push; a provider's dead-token answer removes the device. Clients use only the public contract
 * through one gateway port.
 *
 * Presence times are scaled down (PUSH_DELIVERY_ENV) so "online" is seen within a second.
 */
import { Code, createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PresenceService, PresenceState } from "../gen/switchboard/presence/v1/presence_pb.js";
import { Platform, PushService } from "../gen/switchboard/push/v1/push_pb.js";
import { makeVapidKeys } from "../testkit/push-endpoints/credentials.js";
import { makeWebhookSecret, startWebhookServer, type WebhookServer } from "../testkit/push-endpoints/webhook-server.js";
import { startWebPushServer, type WebPushServer } from "../testkit/push-endpoints/webpush-server.js";
import type { Received } from "../testkit/push-endpoints/script.js";
import { waitFor } from "../testkit/processes.js";
import { bearer, chatClient, LiveDevice, transportFor, withHeaders } from "./chat-wire.js";

const vapid = makeVapidKeys();
const webhookSecret = makeWebhookSecret();

/** The mesh's settings for this suite: real Web Push and webhook providers, loopback targets allowed. */
export const PUSH_DELIVERY_ENV = {
  SWITCHBOARD_PUSH_VAPID_PUBLIC_KEY: vapid.publicKey,
  SWITCHBOARD_PUSH_VAPID_PRIVATE_KEY: vapid.privateKey,
  SWITCHBOARD_PUSH_VAPID_SUBJECT: vapid.subject,
  SWITCHBOARD_PUSH_WEBHOOK_SECRET: webhookSecret.text,
  SWITCHBOARD_PUSH_WEB_PUSH_HOSTS: "127.0.0.1",
  SWITCHBOARD_PUSH_WEBHOOK_HOSTS: "127.0.0.1",
  SWITCHBOARD_PUSH_ALLOW_PRIVATE_TARGETS: "true",
  SWITCHBOARD_PRESENCE_HEARTBEAT_INTERVAL_MS: "1000",
  SWITCHBOARD_PRESENCE_TIMEOUT_MS: "3000",
  SWITCHBOARD_PRESENCE_GRACE_MS: "1000",
  SWITCHBOARD_PRESENCE_MIN_DWELL_MS: "1000",
} as const;

export interface PushDeliveryTarget {
  readonly baseUrl: string;
  tokenFor(userId: string): string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const until = (what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number) =>
  waitFor(what, async () => ((await cond()) ? true : undefined), timeoutMs);

export function pushDeliverySuite(engine: string, target: () => PushDeliveryTarget): void {
  describe(`push for offline members (${engine} engine)`, () => {
    const run = `${engine}-${Date.now().toString(36)}`;
    const ALICE = `alice-${run}`;
    const BOB = `bob-${run}`;
    let webPush: WebPushServer;
    let webhook: WebhookServer;

    beforeAll(async () => {
      webPush = await startWebPushServer({ vapidPublicKey: vapid.publicKey });
      webhook = await startWebhookServer({ key: webhookSecret.key });
    });
    afterAll(async () => {
      await webPush?.close();
      await webhook?.close();
    });

    const headers = (user: string) => bearer(target().tokenFor(user));
    const chat = (user: string) => chatClient(target().baseUrl, "connect-1.1", headers(user));
    const push = (user: string): Client<typeof PushService> =>
      createClient(PushService, transportFor("connect-1.1", target().baseUrl, [withHeaders(headers(user))]));
    const presence = (user: string): Client<typeof PresenceService> =>
      createClient(PresenceService, transportFor("connect-1.1", target().baseUrl, [withHeaders(headers(user))]));
    const pushesOf = (id: string): Received[] => [...webPush.received, ...webhook.received].filter((r) => r.notificationId === id);

    let channelId = "";
    let browserEndpoint = "";

    it("a user offline on every device gets the message as a push on each registered device", async () => {
      const browser = webPush.subscribe();
      browserEndpoint = browser.json.endpoint;
      await push(BOB).registerDevice({ deviceId: "bob-browser", platform: Platform.WEB_PUSH, token: JSON.stringify(browser.json), showPreview: true });
      // The webhook device did not allow previews: its push carries the title and ids, not the text.
      await push(BOB).registerDevice({ deviceId: "bob-hook", platform: Platform.WEBHOOK, token: webhook.hook(`bob-${run}`) });
      channelId = (await chat(ALICE).createDirectChannel({ peerUserId: BOB })).channel!.channelId;

      const sent = await chat(ALICE).sendMessage({ channelId, clientMessageId: "m1", text: "are you there, bob?" });
      const id = `chat:${sent.message!.messageId}:${BOB}`;
      await until(`a push for ${id} on both devices`, () => pushesOf(id).length >= 2, 15_000);
      await sleep(300);
      const got = pushesOf(id);
      expect(got.map((r) => r.provider).sort()).toEqual(["web-push", "webhook"]);
      for (const r of got) {
        expect(r.status, r.provider).toBeLessThan(300);
        expect(r.title, r.provider).toBe("New message");
        expect(r.data, r.provider).toMatchObject({ channel_id: channelId, message_id: String(sent.message!.messageId) });
      }
      expect(got.find((r) => r.provider === "web-push")!.body).toBe("are you there, bob?");
      expect(got.find((r) => r.provider === "webhook")!.body).toBe("");
      // The sender is never pushed their own message.
      expect(pushesOf(`chat:${sent.message!.messageId}:${ALICE}`)).toEqual([]);
    });

    it("a user online on any device gets no push", async () => {
      const phone = new LiveDevice(BOB, "bob-phone", "connect-1.1", () => chat(BOB)).start();
      try {
        await until("bob online (an open chat stream is presence)", async () => (await presence(ALICE).getPresence({ userIds: [BOB] })).presences[0]?.state === PresenceState.ONLINE, 10_000);
        const sent = await chat(ALICE).sendMessage({ channelId, clientMessageId: "m2", text: "now you are online" });
        await until("bob's stream got it", () => phone.messageIds(channelId).includes(sent.message!.messageId), 10_000);
        // The first push took well under this; nothing may come for an online recipient.
        await sleep(2_000);
        expect(pushesOf(`chat:${sent.message!.messageId}:${BOB}`)).toEqual([]);
      } finally {
        phone.stop();
      }
    });

    it("a dead-token answer from the push service removes the device; the others keep getting pushes", async () => {
      await until("bob offline again", async () => (await presence(ALICE).getPresence({ userIds: [BOB] })).presences[0]?.state === PresenceState.OFFLINE, 15_000);
      webPush.script.answer(browserEndpoint, { status: 410, body: "subscription expired" });
      const sent = await chat(ALICE).sendMessage({ channelId, clientMessageId: "m3", text: "third" });
      const id = `chat:${sent.message!.messageId}:${BOB}`;
      await until("the dead browser removed", async () => !(await push(BOB).listDevices({})).devices.some((d) => d.deviceId === "bob-browser"), 15_000);
      await until("the webhook still gets it", () => webhook.received.some((r) => r.notificationId === id), 15_000);
      expect((await push(BOB).listDevices({})).devices.map((d) => d.deviceId)).toEqual(["bob-hook"]);
    });

    it("SendNotification is internal: not served at the edge", async () => {
      const err = await push(ALICE)
        .sendNotification({ notificationId: "forged", userId: BOB, title: "x" })
        .catch((e: unknown) => e as { code: Code });
      expect((err as { code: Code }).code).toBe(Code.Unimplemented);
    });
  });
}
