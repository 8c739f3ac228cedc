import pino from "pino";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ListOnlineResponseSchema, PresenceService } from "../../gen/switchboard/presence/v1/presence_pb.js";
import { PushService, SendNotificationResponseSchema, SendNotificationsResponseSchema, type SendNotificationRequest } from "../../gen/switchboard/push/v1/push_pb.js";
import { DomainError } from "../../platform/errors.js";
import { grpcService, startGrpcServer, type RunningGrpcServer } from "../../platform/grpc/server.js";
import { freePort } from "../../testkit/processes.js";
import { OfflinePush } from "./offline-push.js";
import type { MessageRecord } from "./ports.js";

const message = (id: bigint, channelId: string, senderId: string, text = "hi"): MessageRecord => ({
  id,
  channelId,
  senderId,
  clientMessageId: `c${id}`,
  text,
  createdAt: new Date(),
  deleted: false,
});

describe("offline push (chat asks presence, then push)", () => {
  let srv: RunningGrpcServer;
  let target = "";
  const online = new Set<string>();
  const lookups: string[][] = [];
  const queued: SendNotificationRequest[] = [];
  let presenceDown = false;
  let calls = 0;

  beforeAll(async () => {
    srv = await startGrpcServer({
      services: [
        grpcService(PresenceService, {
          async listOnline(req) {
            if (presenceDown) throw new DomainError("Unavailable", "presence is down");
            lookups.push([...req.userIds]);
            return create(ListOnlineResponseSchema, { onlineUserIds: req.userIds.filter((u) => online.has(u)) });
          },
        }),
        grpcService(PushService, {
          async sendNotifications(req) {
            calls++;
            queued.push(...req.notifications);
            return create(SendNotificationsResponseSchema, { results: req.notifications.map(() => create(SendNotificationResponseSchema, {})) });
          },
        }),
      ],
      port: 0,
      log: pino({ level: "silent" }),
    });
    target = `127.0.0.1:${srv.port}`;
  });
  afterAll(async () => {
    await srv.shutdown(1_000);
  });

  it("queues one notification per recipient offline on every device; none for the sender or the online", async () => {
    const p = new OfflinePush({ presenceTarget: target, pushTarget: target, channelOf: async (id) => ({ id, name: "climbers" }) });
    online.clear();
    online.add("bea");
    queued.length = 0;
    p.messageSent(message(42n, "ch1", "ann", "summit at 6"), ["ann", "bea", "cid", "dan"]);
    await p.settled();
    expect(queued.map((q) => q.userId).sort()).toEqual(["cid", "dan"]);
    const cid = queued.find((q) => q.userId === "cid")!;
    expect(cid.notificationId).toBe("chat:42:cid");
    expect(cid.title).toBe("climbers");
    expect(cid.body).toBe("summit at 6");
    expect(cid.collapseKey).toBe("ch1");
    expect(cid.data).toMatchObject({ channel_id: "ch1", message_id: "42", sender_id: "ann" });
    await p.close();
  });

  it("messages waiting together share one presence lookup and one push call", async () => {
    const p = new OfflinePush({ presenceTarget: target, pushTarget: target, channelOf: async (id) => ({ id, name: "" }), concurrency: 1 });
    online.clear();
    lookups.length = 0;
    queued.length = 0;
    calls = 0;
    for (let i = 1; i <= 10; i++) p.messageSent(message(BigInt(i), "ch2", "ann"), ["ann", "bea", "cid"]);
    await p.settled();
    expect(queued).toHaveLength(20);
    // The first message went alone (nothing was waiting yet); the other nine shared one lookup.
    expect(lookups.length).toBeLessThanOrEqual(2);
    expect(calls).toBe(lookups.length);
    expect(lookups.flat().sort()).toEqual(["bea", "bea", "cid", "cid"]);
    await p.close();
  });

  it("a long body is cut to the contract's 2,000 characters", async () => {
    const p = new OfflinePush({ presenceTarget: target, pushTarget: target, channelOf: async () => undefined });
    online.clear();
    queued.length = 0;
    p.messageSent(message(7n, "ch3", "ann", "é".repeat(5_000)), ["ann", "bea"]);
    await p.settled();
    expect(Array.from(queued[0]!.body)).toHaveLength(2_000);
    expect(queued[0]!.title).toBe("New message");
    await p.close();
  });

  it("while presence is unreachable, asks are dropped for a while instead of piling up", async () => {
    const errors: string[] = [];
    const p = new OfflinePush({ presenceTarget: target, pushTarget: target, channelOf: async () => undefined, attempts: 1, onError: (what) => errors.push(what) });
    presenceDown = true;
    queued.length = 0;
    p.messageSent(message(1n, "ch4", "ann"), ["ann", "bea"]);
    await p.settled();
    p.messageSent(message(2n, "ch4", "ann"), ["ann", "bea"]);
    expect(p.pending).toBe(0);
    presenceDown = false;
    expect(queued).toEqual([]);
    expect(errors).toHaveLength(1);
    await p.close();
  });

  it("an unreachable push service is retried, then reported", async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const errors: string[] = [];
    const p = new OfflinePush({ presenceTarget: target, pushTarget: dead, channelOf: async () => undefined, attempts: 2, onError: (what) => errors.push(what) });
    online.clear();
    p.messageSent(message(3n, "ch5", "ann"), ["ann", "bea"]);
    await p.settled();
    expect(errors).toEqual(["offline push: 1 of 1 batches of notifications not queued"]);
    await p.close();
  });
});
