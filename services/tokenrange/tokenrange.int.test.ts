/** The token-range domain on real ZooKeeper, and the gRPC service with ZooKeeper going away. */
import { Code, ConnectError } from "@connectrpc/connect";
import pino from "pino";
import { afterAll, expect, it } from "vitest";
import { TokenRangeService } from "../../gen/switchboard/tokenrange/v1/tokenrange_pb.js";
import type { Engine } from "../../platform/engine.js";
import { TcpProxy } from "../../platform/engines/cluster/testing/tcp-proxy.js";
import { ZooKeeperCoordinator } from "../../platform/engines/cluster/zookeeper-coordinator.js";
import type { Config } from "../../platform/config.js";
import { createGrpcClient } from "../../platform/grpc/client.js";
import { grpcService, startGrpcServer } from "../../platform/grpc/server.js";
import { infra } from "../../testkit/keyspace.js";
import { freePort } from "../../testkit/servers/index.js";
import { createLeaseClient } from "./lease-client.js";
import { noUpstreams } from "../module.js";
import { tokenrangeModule } from "./module.js";
import { grpcRangeSource } from "./range-source.js";
import { tokenRangeConformance } from "./testing/tokenrange.conformance.js";

const sessions: ZooKeeperCoordinator[] = [];
const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  await Promise.all(sessions.map((s) => s.close()));
});

tokenRangeConformance(async () => ({
  open: async () => {
    const c = new ZooKeeperCoordinator({ connectString: infra().zookeeper.connectString, sessionTimeoutMs: 4_000 });
    await c.whenConnected(20_000);
    sessions.push(c);
    return c;
  },
  closeSession: (c) => (c as ZooKeeperCoordinator).close(),
}));

it("gRPC service on ZooKeeper: ZooKeeper down -> Unavailable; the lease client serves its buffer, then Unavailable, then recovers", async () => {
  const proxy = new TcpProxy(await freePort(), { host: "127.0.0.1", port: infra().zookeeper.port });
  await proxy.up();
  cleanups.push(() => proxy.down());
  const zk = new ZooKeeperCoordinator({ connectString: `127.0.0.1:${proxy.port}`, sessionTimeoutMs: 10_000 });
  sessions.push(zk);
  await zk.whenConnected(20_000);
  const engine = { kind: "cluster", coordinator: zk } as unknown as Engine;
  const log = pino({ level: "silent" });
  const svc = await tokenrangeModule.create({ engine, log, config: {} as Config, upstreamAddress: noUpstreams });
  const srv = await startGrpcServer({ services: [grpcService(TokenRangeService, svc.impl)], port: 0, log });
  cleanups.push(() => srv.shutdown(100));
  cleanups.push(() => svc.close?.());
  const target = `127.0.0.1:${srv.port}`;
  const client = createGrpcClient(TokenRangeService, target, { defaultTimeoutMs: 10_000 });
  cleanups.push(() => client.close());
  const ns = `it-${Date.now()}`;
  const first = await client.acquireRange({ namespace: ns, size: 100n });
  expect(first.end - first.start).toBe(100n);

  const ids = createLeaseClient({ namespace: ns, source: grpcRangeSource(target), initialSize: 200, maxSize: 200, retryMinMs: 50, retryMaxMs: 200 });
  await ids.ready();
  for (let i = 0; i < 25; i++) await ids.nextAsync(); // past the 10% prefetch point
  while (ids.stats().buffered < 375) await new Promise((r) => setTimeout(r, 10)); // spare fetched

  await proxy.down();
  const t0 = Date.now();
  const err = await client.acquireRange({ namespace: ns, size: 1n }).then(() => undefined, (e: unknown) => ConnectError.from(e));
  expect(err?.code).toBe(Code.Unavailable);
  console.log(`tokenrange.int: AcquireRange with ZooKeeper down -> ${Code[err!.code]} in ${Date.now() - t0} ms: ${err!.rawMessage}`);

  let served = 25;
  const seen = new Set<bigint>();
  let lastErr: unknown;
  for (;;) {
    try {
      seen.add(await ids.nextAsync());
      served++;
    } catch (e) {
      lastErr = e;
      break;
    }
  }
  expect(lastErr).toMatchObject({ kind: "Unavailable" });
  expect(served).toBe(400); // both buffered ranges, fully
  expect(seen.size).toBe(served - 25);

  await proxy.up();
  await zk.whenConnected(20_000);
  const v = await ids.nextAsync();
  expect(v >= 400n).toBe(true);
  await ids.close();
}, 60_000);
