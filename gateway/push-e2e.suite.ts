/**
 * Issue 14 acceptance for the device registry and SendNotification's enqueue side, run on both
 * engines (push-e2e.test.ts memory, push-e2e.int.test.ts cluster). The registry is used only
 * through one gateway port, as clients would; SendNotification (internal) is called on the push
 * service's own gRPC port, and what it queued is read back from the PUSH stream.
 *
 * The allowlists (PUSH_E2E_ENV) name internal addresses on purpose, with private targets NOT
 * allowed: each refusal below is the internal-address rule, not a missing allowlist entry.
 * 93.184.215.14 is a public literal address (no DNS needed on a machine without it).
 */
import { create, toJsonString } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { afterAll, describe, expect, it } from "vitest";
import { ListDevicesResponseSchema, Platform, PushService, SendNotificationRequestSchema } from "../gen/switchboard/push/v1/push_pb.js";
import type { Engine } from "../platform/engine.js";
import { createGrpcClient } from "../platform/grpc/client.js";
import type { Consumption } from "../platform/ports/event-bus.js";
import { decodePushRequest, pushStream } from "../services/push/queue.js";
import type { Notification } from "../services/push/ports.js";
import { waitFor } from "../testkit/processes.js";
import { bearer, transportFor, withHeaders, type Protocol } from "./chat-wire.js";

const INTERNAL_HOSTS = ["127.0.0.1", "localhost", "10.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1"];
const PUBLIC_HOST = "93.184.215.14";

export const PUSH_E2E_ENV = {
  SWITCHBOARD_PUSH_WEB_PUSH_HOSTS: ["fcm.googleapis.com", PUBLIC_HOST, ...INTERNAL_HOSTS].join(","),
  SWITCHBOARD_PUSH_WEBHOOK_HOSTS: ["hooks.push-e2e.invalid", PUBLIC_HOST, ...INTERNAL_HOSTS].join(","),
  SWITCHBOARD_PUSH_ALLOW_PRIVATE_TARGETS: "false",
} as const;

export interface PushE2eTarget {
  readonly baseUrl: string;
  tokenFor(userId: string): string;
  /** host:port of the push service's internal gRPC server. */
  readonly pushAddress: string;
  /** The mesh's engine (its bus reads the PUSH stream back). */
  readonly engine: Engine;
  /** config.cassandra.keyspace of the mesh (names the PUSH stream). */
  readonly keyspace: string;
}

type PushClient = Client<typeof PushService>;

const b64 = (bytes: number[]) => Buffer.from(bytes).toString("base64url");
const KEYS = { p256dh: b64([4, ...Array<number>(64).fill(7)]), auth: b64(Array<number>(16).fill(9)) };
const subscription = (endpoint: string) => JSON.stringify({ endpoint, keys: KEYS });
const FCM_TOKEN = "fcm-token:APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ-hQMRKRrZuJAEcl7B338qju59zJMjw2DELjzEvxwYv7hH5Ynpc1ODQ0aT4U4OFEeco8ohsN5PjL1iC2dNtk2BAokeMCg2ZXKqpc8FXKmhX94kIxQ";
const APNS_TOKEN = "a1b2c3d4".repeat(8);

async function codeOf(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof ConnectError)) return { code: "OK", message: "" };
  return { code: Code[err.code], message: err.rawMessage };
}

export function pushEndToEndSuite(engine: string, target: () => PushE2eTarget): void {
  describe(`push registry and queue through the gateway (${engine} engine)`, () => {
    const run = `${engine}-${Date.now().toString(36)}`;
    const ALICE = `alice-${run}`;
    const BOB = `bob-${run}`;
    const CAROL = `carol-${run}`;
    const MALLORY = `mallory-${run}`;
    const push = (user: string | undefined, protocol: Protocol = "connect-1.1"): PushClient =>
      createClient(PushService, transportFor(protocol, target().baseUrl, user ? [withHeaders(bearer(target().tokenFor(user)))] : []));
    const deviceIds = async (user: string) => (await push(user).listDevices({})).devices.map((d) => d.deviceId);
    const consumptions: Consumption[] = [];
    afterAll(async () => {
      await Promise.allSettled(consumptions.map((c) => c.stop()));
    });

    it("without credentials every registry method is UNAUTHENTICATED", async () => {
      const anon = push(undefined);
      for (const p of [
        anon.registerDevice({ deviceId: "d", platform: Platform.FCM, token: FCM_TOKEN }),
        anon.unregisterDevice({ deviceId: "d" }),
        anon.listDevices({}),
      ]) {
        expect((await codeOf(p)).code).toBe("Unauthenticated");
      }
    });

    it("register, list with a token hint only, re-register updates, unregister is idempotent", async () => {
      const alice = push(ALICE);
      const phone = await alice.registerDevice({ deviceId: "phone", platform: Platform.FCM, token: FCM_TOKEN, displayName: "Pixel 8" });
      expect(phone.device).toMatchObject({ deviceId: "phone", platform: Platform.FCM, tokenHint: FCM_TOKEN.slice(-8), displayName: "Pixel 8" });
      await new Promise((r) => setTimeout(r, 5));
      await alice.registerDevice({ deviceId: "tablet", platform: Platform.APNS, token: APNS_TOKEN });
      const list = await alice.listDevices({});
      expect(list.devices.map((d) => [d.deviceId, d.tokenHint])).toEqual([
        ["tablet", APNS_TOKEN.slice(-8)],
        ["phone", FCM_TOKEN.slice(-8)],
      ]);
      expect(toJsonString(ListDevicesResponseSchema, list)).not.toContain(FCM_TOKEN.slice(0, 40));
      await new Promise((r) => setTimeout(r, 5));
      const again = await alice.registerDevice({ deviceId: "phone", platform: Platform.FCM, token: `${FCM_TOKEN}-v2`, displayName: "Pixel 9" });
      expect(again.device!.tokenHint).toBe(`${FCM_TOKEN}-v2`.slice(-8));
      expect(timestampMs(again.device!.createTime!)).toBe(timestampMs(phone.device!.createTime!));
      expect(timestampMs(again.device!.updateTime!)).toBeGreaterThan(timestampMs(phone.device!.updateTime!));
      expect((await alice.listDevices({})).devices.map((d) => [d.deviceId, d.displayName])).toEqual([
        ["phone", "Pixel 9"],
        ["tablet", ""],
      ]);
      await alice.unregisterDevice({ deviceId: "tablet" });
      await alice.unregisterDevice({ deviceId: "tablet" });
      await alice.unregisterDevice({ deviceId: "never-registered" });
      expect(await deviceIds(ALICE)).toEqual(["phone"]);
    });

    it("non-owners: another user never sees nor removes alice's devices; the same device id is theirs apart", async () => {
      const bob = push(BOB);
      expect(await deviceIds(BOB)).toEqual([]);
      await bob.unregisterDevice({ deviceId: "phone" });
      expect(await deviceIds(ALICE)).toEqual(["phone"]);
      await bob.registerDevice({ deviceId: "phone", platform: Platform.APNS, token: APNS_TOKEN });
      expect(await deviceIds(BOB)).toEqual(["phone"]);
      const alices = (await push(ALICE).listDevices({})).devices;
      expect(alices.map((d) => [d.deviceId, d.platform])).toEqual([["phone", Platform.FCM]]);
      // Identity comes from the credential only: a client-sent identity header is dropped at the edge.
      const forged = createClient(
        PushService,
        transportFor("connect-1.1", target().baseUrl, [withHeaders({ ...bearer(target().tokenFor(BOB)), "x-switchboard-identity": "forged", "x-switchboard-user": ALICE })]),
      );
      expect((await forged.listDevices({})).devices.map((d) => d.platform)).toEqual([Platform.APNS]);
    });

    it("a sixth device is RESOURCE_EXHAUSTED; re-registering one of the five still works", async () => {
      const carol = push(CAROL);
      for (let i = 1; i <= 5; i++) await carol.registerDevice({ deviceId: `d${i}`, platform: Platform.FCM, token: `carol-token-${i}` });
      const sixth = await codeOf(carol.registerDevice({ deviceId: "d6", platform: Platform.FCM, token: "carol-token-6" }));
      expect(sixth.code).toBe("ResourceExhausted");
      expect(sixth.message).toContain("5 devices");
      expect((await carol.registerDevice({ deviceId: "d3", platform: Platform.FCM, token: "carol-token-3b" })).device!.deviceId).toBe("d3");
      expect((await deviceIds(CAROL)).sort()).toEqual(["d1", "d2", "d3", "d4", "d5"]);
    });

    const invalid: [string, Platform, string, string][] = [
      ["platform unspecified", Platform.UNSPECIFIED, FCM_TOKEN, "platform"],
      ["an unknown platform number", 99 as Platform, FCM_TOKEN, "platform"],
      ["an oversized token (4,097)", Platform.FCM, "x".repeat(4_097), "at most 4096"],
      ["an empty token", Platform.FCM, "", "token"],
      ["FCM with spaces", Platform.FCM, "not a token", "FCM registration token"],
      ["APNs not hex", Platform.APNS, "z".repeat(64), "APNs device token"],
      ["APNs too short", Platform.APNS, "ab".repeat(16), "APNs device token"],
      ["APNs odd length", Platform.APNS, "a".repeat(65), "APNs device token"],
      ["Web Push not JSON", Platform.WEB_PUSH, "https://fcm.googleapis.com/fcm/send/x", "PushSubscription"],
      ["Web Push bad p256dh", Platform.WEB_PUSH, JSON.stringify({ endpoint: `https://${PUBLIC_HOST}/x`, keys: { ...KEYS, p256dh: "AAAA" } }), "p256dh"],
      ["Web Push bad auth", Platform.WEB_PUSH, JSON.stringify({ endpoint: `https://${PUBLIC_HOST}/x`, keys: { ...KEYS, auth: "AAAA" } }), "auth"],
      ["Web Push over http", Platform.WEB_PUSH, subscription(`http://${PUBLIC_HOST}/x`), "https"],
      ["webhook over http", Platform.WEBHOOK, `http://${PUBLIC_HOST}/hook`, "https"],
      ["webhook with credentials", Platform.WEBHOOK, `https://user:pw@${PUBLIC_HOST}/hook`, "credentials"],
      ["webhook with a fragment", Platform.WEBHOOK, `https://${PUBLIC_HOST}/hook#x`, "fragment"],
      ["webhook not a URL", Platform.WEBHOOK, "hooks.example.com/x", "https URL"],
    ];
    it.each(invalid)("INVALID_ARGUMENT: %s", async (_, platform, token, message) => {
      const r = await codeOf(push(MALLORY).registerDevice({ deviceId: "m1", platform, token }));
      expect(r.code).toBe("InvalidArgument");
      expect(r.message).toContain(message);
    });

    it("INVALID_ARGUMENT: bad device ids and display names", async () => {
      for (const [deviceId, displayName, field] of [["", "", "device_id"], ["x".repeat(65), "", "device_id"], ["a b", "", "device_id"], ["ok", "n".repeat(101), "display_name"]] as const) {
        const r = await codeOf(push(MALLORY).registerDevice({ deviceId, platform: Platform.FCM, token: FCM_TOKEN, displayName }));
        expect([r.code, r.message.split(":")[0]]).toEqual(["InvalidArgument", field]);
      }
      expect((await codeOf(push(MALLORY).unregisterDevice({ deviceId: "" }))).code).toBe("InvalidArgument");
    });

    const internalTargets = ["127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]", "localhost", "2130706433", "0x7f.1"];
    const targetCases: [string, Platform, string, string][] = [
      ...internalTargets.map((h): [string, Platform, string, string] => [`webhook on ${h}`, Platform.WEBHOOK, `https://${h}/hook`, "internal address"]),
      ...internalTargets.map((h): [string, Platform, string, string] => [`Web Push on ${h}`, Platform.WEB_PUSH, subscription(`https://${h}/push/abc`), "internal address"]),
      ["webhook on a host not allowed", Platform.WEBHOOK, "https://evil.example.net/hook", "allowlist"],
      ["Web Push on a host not allowed", Platform.WEB_PUSH, subscription("https://evil.example.net/push"), "allowlist"],
      ["webhook on 192.168.1.1 (not allowed)", Platform.WEBHOOK, "https://192.168.1.1/hook", "allowlist"],
      ["webhook on an allowed name that does not resolve", Platform.WEBHOOK, "https://hooks.push-e2e.invalid/hook", "does not resolve"],
    ];
    it.each(targetCases)("PERMISSION_DENIED: %s", async (_, platform, token, reason) => {
      const r = await codeOf(push(MALLORY).registerDevice({ deviceId: "target", platform, token }));
      expect(r.code).toBe("PermissionDenied");
      expect(r.message).toMatch(/^token(\.endpoint)?: this target may not be called: /);
      expect(r.message).toContain(reason);
    });

    it("nothing refused was stored; a public allowed target is accepted", async () => {
      expect(await deviceIds(MALLORY)).toEqual([]);
      const m = push(MALLORY);
      await m.registerDevice({ deviceId: "hook", platform: Platform.WEBHOOK, token: `https://${PUBLIC_HOST}/hook` });
      await m.registerDevice({ deviceId: "browser", platform: Platform.WEB_PUSH, token: subscription(`https://${PUBLIC_HOST}/push/abc`) });
      expect((await deviceIds(MALLORY)).sort()).toEqual(["browser", "hook"]);
    });

    it("SendNotification and SendNotifications are not served at the edge (internal only), on every protocol", async () => {
      for (const protocol of ["connect-1.1", "grpc", "grpc-web-1.1"] as const) {
        const forged = { notificationId: `edge-${run}`, userId: ALICE, title: "forged" };
        for (const call of [() => push(MALLORY, protocol).sendNotification(forged), () => push(MALLORY, protocol).sendNotifications({ notifications: [forged] })]) {
          const r = await codeOf(call());
          expect(r.code, protocol).toBe("Unimplemented");
          expect(r.message).toContain("internal");
        }
      }
    });

    it("SendNotification on the service: queued once (duplicate=false, then true), the request on the PUSH stream", async () => {
      const internal = createGrpcClient(PushService, target().pushAddress, { defaultTimeoutMs: 10_000 });
      try {
        const id = `chat:${run}:1:${ALICE}`;
        const req = create(SendNotificationRequestSchema, {
          notificationId: id,
          userId: ALICE,
          title: "Bob",
          body: "hi alice",
          data: { channel_id: "c1", message_id: "1" },
          collapseKey: "c1",
        });
        const before = Date.now();
        expect((await internal.sendNotification(req)).duplicate).toBe(false);
        expect((await internal.sendNotification(req)).duplicate).toBe(true);
        expect((await internal.sendNotification({ ...req, title: "changed" })).duplicate).toBe(true);
        const explicit = Date.now() + 3_600_000;
        expect((await internal.sendNotification({ ...req, notificationId: `${id}-b`, expireTime: timestampFromMs(explicit) })).duplicate).toBe(false);

        const seen: Notification[] = [];
        const bus = target().engine.bus;
        consumptions.push(
          await bus.consume(pushStream(target().keyspace), `e2e-check-${run}`, (m) => {
            seen.push(decodePushRequest(m.data));
            m.ack();
          }),
        );
        await waitFor("both requests on the PUSH stream", async () => (seen.filter((n) => n.id.startsWith(id)).length >= 2 ? true : undefined), 10_000);
        await new Promise((r) => setTimeout(r, 300));
        const mine = seen.filter((n) => n.id.startsWith(id));
        expect(mine.map((n) => n.id)).toEqual([id, `${id}-b`]);
        const n = mine[0]!;
        expect({ ...n, expireAtMs: 0, createdAtMs: 0 }).toEqual({
          id,
          userId: ALICE,
          title: "Bob",
          body: "hi alice",
          data: { channel_id: "c1", message_id: "1" },
          collapseKey: "c1",
          expireAtMs: 0,
          createdAtMs: 0,
        });
        expect(n.createdAtMs).toBeGreaterThanOrEqual(before - 1_000);
        expect(n.expireAtMs - n.createdAtMs).toBe(86_400_000);
        expect(mine[1]!.expireAtMs).toBe(explicit);

        for (const [bad, field] of [
          [{ ...req, notificationId: "" }, "notification_id"],
          [{ ...req, userId: "" }, "user_id"],
          [{ ...req, expireTime: timestampFromMs(Date.now() - 1_000) }, "expire_time"],
          [{ ...req, expireTime: timestampFromMs(Date.now() + 8 * 86_400_000) }, "expire_time"],
          [{ ...req, title: "t".repeat(201) }, "title"],
        ] as const) {
          const r = await codeOf(internal.sendNotification({ ...bad, notificationId: bad.notificationId && `${bad.notificationId}-${field}` }));
          expect([r.code, r.message.split(":")[0]]).toEqual(["InvalidArgument", field]);
        }
      } finally {
        internal.close();
      }
    });
  });
}
