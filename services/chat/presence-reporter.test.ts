// Chat streams as presence: the Delivery port wrapped with the reporter, the real presence
// service on a memory engine (its internal gRPC port), short timings. A device holding a stream
// is online and stays online past the timeout without sending anything; a replaced stream keeps
// it online; the last stream closing takes it offline after the grace.
import { Code, ConnectError } from "@connectrpc/connect";
import { fromBinary } from "@bufbuild/protobuf";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PresenceChangedSchema } from "../../gen/switchboard/events/v1/events_pb.js";
import { PresenceService, PresenceState } from "../../gen/switchboard/presence/v1/presence_pb.js";
import { loadConfig } from "../../platform/config.js";
import { openMemoryEngine, type Engine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import { createGrpcClient } from "../../platform/grpc/client.js";
import type { RunningGrpcServer } from "../../platform/grpc/server.js";
import { assertionHeaders, TEST_MESH_SECRET } from "../../testkit/mesh-identity.js";
import { waitFor } from "../../testkit/processes.js";
import { noUpstreams } from "../module.js";
import { PRESENCE_CHANGED_SUBJECT } from "../presence/fanout.js";
import { presenceModule } from "../presence/module.js";
import { serveService } from "../serve.js";
import { LocalDelivery } from "./adapters/local-delivery.js";
import type { LiveStream } from "./ports.js";
import { PresenceReporter, withPresenceReports } from "./presence-reporter.js";

const config = loadConfig({
  SWITCHBOARD_ENGINE: "memory",
  SWITCHBOARD_MESH_SECRET: TEST_MESH_SECRET,
  SWITCHBOARD_PRESENCE_HEARTBEAT_INTERVAL_MS: "300",
  SWITCHBOARD_PRESENCE_TIMEOUT_MS: "900",
  SWITCHBOARD_PRESENCE_GRACE_MS: "300",
  SWITCHBOARD_PRESENCE_MIN_DWELL_MS: "300",
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const stream = (userId: string, deviceId: string): LiveStream => ({ userId, deviceId, push: () => {} });

let engine: Engine;
let server: RunningGrpcServer;
let reporter: PresenceReporter;
const changes: string[] = [];

beforeAll(async () => {
  engine = openMemoryEngine(silentLog);
  engine.bus.subscribe(PRESENCE_CHANGED_SUBJECT, (m) => {
    const ev = fromBinary(PresenceChangedSchema, m.data);
    changes.push(`${ev.userId} ${PresenceState[ev.state]}`);
  });
  server = await serveService(presenceModule, { config, log: pino({ level: "silent" }), engine, upstreamAddress: noUpstreams }, { host: "127.0.0.1", port: 0 });
  reporter = new PresenceReporter({ target: `127.0.0.1:${server.port}`, intervalMs: 1_000 });
});
afterAll(async () => {
  await reporter?.close();
  await server?.shutdown(0);
  await engine?.close();
});

const stateOf = async (user: string): Promise<string> => {
  const client = createGrpcClient(PresenceService, `127.0.0.1:${server.port}`);
  try {
    const r = await client.getPresence({ userIds: [user] }, { headers: assertionHeaders(user, PresenceService.method.getPresence) });
    return PresenceState[r.presences[0]!.state];
  } finally {
    client.close();
  }
};

describe("chat streams report presence", () => {
  it("a device with an open stream is online at once and stays online past the timeout without sending anything", async () => {
    const delivery = withPresenceReports(new LocalDelivery(), reporter);
    delivery.attach(stream("rita", "phone"));
    await waitFor("rita online", async () => ((await stateOf("rita")) === "ONLINE" ? true : undefined), 5_000);
    // The first answer set the report interval to the service's (300 ms); timeout 900 ms.
    await sleep(3 * 900);
    expect(await stateOf("rita")).toBe("ONLINE");
    expect(changes.filter((c) => c.startsWith("rita "))).toEqual(["rita ONLINE"]);
  });

  it("a stream replaced by a newer one of the same device keeps it online; the last one closing takes it offline after the grace", async () => {
    const delivery = withPresenceReports(new LocalDelivery(), reporter);
    const first = stream("sam", "laptop");
    delivery.attach(first);
    await waitFor("sam online", async () => ((await stateOf("sam")) === "ONLINE" ? true : undefined), 5_000);
    const second = stream("sam", "laptop");
    delivery.attach(second);
    delivery.detach(first);
    await sleep(3 * 900);
    expect(await stateOf("sam")).toBe("ONLINE");
    delivery.detach(second);
    const t0 = Date.now();
    await waitFor("sam offline", async () => ((await stateOf("sam")) === "OFFLINE" ? true : undefined), 5_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300 - 50);
    expect(changes.filter((c) => c.startsWith("sam "))).toEqual(["sam ONLINE", "sam OFFLINE"]);
    expect(reporter.size).toBe(1); // rita's phone
  });

  it("ReportDevices validates every device", async () => {
    const client = createGrpcClient(PresenceService, `127.0.0.1:${server.port}`);
    try {
      const err = await client.reportDevices({ live: [{ userId: "ok", deviceId: "d" }, { userId: "ok", deviceId: "bad id" }] }).catch((e: unknown) => e);
      expect((err as ConnectError).code).toBe(Code.InvalidArgument);
      expect((err as ConnectError).rawMessage).toContain("live[1].device_id");
    } finally {
      client.close();
    }
  });
});
