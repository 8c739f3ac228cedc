/**
 * The token-range IdMinter on the cluster engine's coordination: two token-range replicas, each
 * on its own ZooKeeper session (as two processes would be), and a chat minter talking to each
 * over its own gRPC client. Worker ids are arbitrated by ZooKeeper, so the two minters must
 * never mint the same id, also when one of them hands its worker id back and a new minter
 * takes one while the other keeps minting.
 */
import pino from "pino";
import { afterAll, expect, it } from "vitest";
import { TokenRangeService } from "../../../gen/switchboard/tokenrange/v1/tokenrange_pb.js";
import type { Config } from "../../../platform/config.js";
import type { Engine } from "../../../platform/engine.js";
import { ZooKeeperCoordinator } from "../../../platform/engines/cluster/zookeeper-coordinator.js";
import { silentLog } from "../../../platform/engines/log.js";
import { grpcService, startGrpcServer } from "../../../platform/grpc/server.js";
import { infra } from "../../../testkit/keyspace.js";
import { noUpstreams } from "../../module.js";
import { tokenrangeModule } from "../../tokenrange/module.js";
import { decodeSnowflake } from "../../tokenrange/snowflake.js";
import { tokenRangeIdMinter, type TokenRangeIdMinter } from "./token-range-minter.js";

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
});

/** One token-range process: its own ZooKeeper session, service and gRPC server. */
async function tokenRangeReplica(): Promise<string> {
  const zk = new ZooKeeperCoordinator({ connectString: infra().zookeeper.connectString, sessionTimeoutMs: 6_000 });
  cleanups.push(() => zk.close());
  await zk.whenConnected(20_000);
  const engine = { kind: "cluster", coordinator: zk } as unknown as Engine;
  const log = pino({ level: "silent" });
  const svc = await tokenrangeModule.create({ engine, log, config: {} as Config, upstreamAddress: noUpstreams });
  cleanups.push(() => svc.close?.());
  const srv = await startGrpcServer({ services: [grpcService(TokenRangeService, svc.impl)], port: 0, host: "127.0.0.1", log });
  cleanups.push(() => srv.shutdown(100));
  return `127.0.0.1:${srv.port}`;
}

it("two minters behind two token-range replicas on ZooKeeper hold distinct worker ids and never mint the same id", async () => {
  const [t1, t2] = [await tokenRangeReplica(), await tokenRangeReplica()];
  const namespace = `chat-it-${Date.now().toString(36)}`;
  const open = async (target: string, n: number): Promise<TokenRangeIdMinter> => {
    const m = await tokenRangeIdMinter({ target, instanceId: `chat-${n}@it`, log: silentLog, namespace, ttlMs: 5_000 });
    cleanups.push(() => m.close());
    expect(m.lease(), `minter ${n} holds a lease`).toBeDefined();
    return m;
  };
  const a = await open(t1, 1);
  const b = await open(t2, 2);
  expect(a.lease()!.workerId).not.toBe(b.lease()!.workerId);

  const seen = new Set<bigint>();
  const mint = async (m: TokenRangeIdMinter, count: number): Promise<void> => {
    let prev = 0n;
    for (let i = 0; i < count; i++) {
      const id = m.next();
      expect(id > prev).toBe(true);
      prev = id;
      seen.add(id);
      if (i % 500 === 0) await new Promise((r) => setImmediate(r)); // interleave the two
    }
  };
  await Promise.all([mint(a, 30_000), mint(b, 30_000)]);
  expect(seen.size).toBe(60_000);

  // a hands its worker id back; c (another process, the other replica) leases one while b mints on.
  const aWorker = a.lease()!.workerId;
  await a.close();
  const c = await open(t2, 3);
  expect(c.lease()!.workerId).not.toBe(b.lease()!.workerId);
  await Promise.all([mint(b, 20_000), mint(c, 20_000)]);
  expect(seen.size).toBe(100_000);
  const workers = new Set([...seen].map((id) => decodeSnowflake(id).workerId));
  expect(workers.size).toBeLessThanOrEqual(3);
  expect(workers.has(aWorker)).toBe(true);
}, 60_000);
