/**
 * Restarting the presence service causes no storm of false offline transitions, and the state is
 * right again within one heartbeat interval (issue 13). Run on both engines: restart.test.ts
 * (memory: the service module restarted on a living engine) and restart.int.test.ts (cluster:
 * a second process's engine, the first one's ZooKeeper lock released).
 *
 * 20 users heartbeat every interval on the service's internal port (with the identity the gateway
 * would sign) and keep trying while it is down; a 21st user stops before the restart. The service
 * is down for twice the timeout, so every deadline in the store has lapsed when it comes back.
 * Every PresenceChanged on the bus is recorded.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { PresenceChangedSchema } from "../../gen/switchboard/events/v1/events_pb.js";
import { PresenceService, PresenceState } from "../../gen/switchboard/presence/v1/presence_pb.js";
import type { Config } from "../../platform/config.js";
import type { Engine } from "../../platform/engine.js";
import { createGrpcClient } from "../../platform/grpc/client.js";
import type { RunningGrpcServer } from "../../platform/grpc/server.js";
import { assertionHeaders } from "../../testkit/mesh-identity.js";
import { waitFor } from "../../testkit/processes.js";
import { noUpstreams } from "../module.js";
import { serveService } from "../serve.js";
import { PRESENCE_CHANGED_SUBJECT } from "./fanout.js";
import { presenceModule } from "./module.js";

export const RESTART_ENV = {
  SWITCHBOARD_PRESENCE_HEARTBEAT_INTERVAL_MS: "500",
  SWITCHBOARD_PRESENCE_TIMEOUT_MS: "1500",
  SWITCHBOARD_PRESENCE_GRACE_MS: "500",
  SWITCHBOARD_PRESENCE_MIN_DWELL_MS: "500",
} as const;
const INTERVAL = 500;
const TIMEOUT = 1_500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface RestartTarget {
  readonly config: Config;
  /** The engine of the first process, and of the one after the restart (memory: the same). */
  first(): Promise<Engine>;
  second(): Promise<Engine>;
}

export function presenceRestartSuite(name: string, target: () => RestartTarget): void {
  describe(`presence service restart (${name} engine)`, () => {
    it("no false offline transition for users who keep heartbeating; the one who left goes offline once, within an interval of the restart", async () => {
      const { config } = target();
      const log = pino({ level: "silent" });
      const run = `${name}-${Date.now().toString(36)}`;
      const users = Array.from({ length: 20 }, (_, i) => `stay${i}-${run}`);
      const LEAVER = `leaver-${run}`;
      const seen: { userId: string; state: PresenceState; at: number; lastSeen: number }[] = [];
      const engineA = await target().first();
      const unsubscribe = engineA.bus.subscribe(PRESENCE_CHANGED_SUBJECT, (msg) => {
        const ev = fromBinary(PresenceChangedSchema, msg.data);
        if (ev.userId.endsWith(run)) seen.push({ userId: ev.userId, state: ev.state, at: Date.now(), lastSeen: timestampDate(ev.lastSeenTime!).getTime() });
      });
      const serve = (engine: Engine) => serveService(presenceModule, { config, log, engine, upstreamAddress: noUpstreams }, { host: "127.0.0.1", port: 0 });
      let server: RunningGrpcServer | undefined = await serve(engineA);
      let address = `127.0.0.1:${server.port}`;
      const beat = async (user: string, deviceId = "d") => {
        const client = createGrpcClient(PresenceService, address, { defaultTimeoutMs: 1_000 });
        try {
          await client.heartbeat({ deviceId }, { headers: assertionHeaders(user, PresenceService.method.heartbeat) });
        } catch {
          // Down: the next beat comes an interval later.
        } finally {
          client.close();
        }
      };
      let beating = true;
      const loops = users.map(async (u) => {
        while (beating) {
          await beat(u);
          await sleep(INTERVAL);
        }
      });
      try {
        await beat(LEAVER);
        await waitFor("everyone online", async () => (seen.filter((s) => s.state === PresenceState.ONLINE).length === users.length + 1 ? true : undefined), 30_000);
        // Let the damping of the first transitions pass, then restart: down for twice the timeout.
        await sleep(1_000);
        await server.shutdown(0);
        server = undefined;
        const downAt = Date.now();
        await sleep(2 * TIMEOUT);
        const engineB = await target().second();
        server = await serve(engineB);
        address = `127.0.0.1:${server.port}`;
        const upAt = Date.now();
        expect(upAt - downAt).toBeGreaterThan(TIMEOUT);
        const leaverOff = await waitFor("the leaver to go offline", async () => seen.find((s) => s.userId === LEAVER && s.state === PresenceState.OFFLINE), 10_000);
        // The new sweeper holds one interval, then sweeps within a tick (150 ms here).
        expect(leaverOff.at - upAt).toBeLessThanOrEqual(INTERVAL + 1_000);
        await sleep(2 * TIMEOUT);
        const afterRestart = seen.filter((s) => s.at >= downAt && s.userId !== LEAVER);
        expect(afterRestart.map((s) => `${s.userId} ${PresenceState[s.state]}`)).toEqual([]);
        expect(seen.filter((s) => s.userId === LEAVER).map((s) => PresenceState[s.state])).toEqual(["ONLINE", "OFFLINE"]);
        // GetPresence agrees: everyone who stayed is online.
        const client = createGrpcClient(PresenceService, address);
        try {
          const r = await client.getPresence({ userIds: [...users, LEAVER] }, { headers: assertionHeaders(users[0]!, PresenceService.method.getPresence) });
          // users[0] shares no channel with the others: only itself is visible.
          expect(r.presences.map((p) => PresenceState[p.state])).toEqual(["ONLINE", ...users.slice(1).map(() => "UNSPECIFIED"), "UNSPECIFIED"]);
        } finally {
          client.close();
        }
      } finally {
        beating = false;
        await Promise.all(loops);
        unsubscribe();
        await server?.shutdown(0);
      }
    }, 60_000);
  });
}
