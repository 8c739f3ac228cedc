/** TokenRangeService over a real gRPC server (memory engine) + the lease client's gRPC source. */
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenRangeService } from "../../gen/switchboard/tokenrange/v1/tokenrange_pb.js";
import { openMemoryEngine, type Engine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import { createGrpcClient, type GrpcClient } from "../../platform/grpc/client.js";
import { grpcService, startGrpcServer, type RunningGrpcServer } from "../../platform/grpc/server.js";
import type { Config } from "../../platform/config.js";
import { createLeaseClient } from "./lease-client.js";
import { tokenrangeModule } from "./module.js";
import { noUpstreams } from "../module.js";
import { grpcRangeSource, type RangeSource } from "./range-source.js";

const log = pino({ level: "silent" });
let engine: Engine;
let srv: RunningGrpcServer;
let client: GrpcClient<typeof TokenRangeService>;
let closeSvc: (() => Promise<void>) | undefined;

beforeAll(async () => {
  engine = openMemoryEngine(silentLog);
  const svc = await tokenrangeModule.create({ engine, log, config: {} as Config, upstreamAddress: noUpstreams });
  closeSvc = svc.close;
  srv = await startGrpcServer({ services: [grpcService(TokenRangeService, svc.impl)], port: 0, log });
  client = createGrpcClient(TokenRangeService, `127.0.0.1:${srv.port}`, { defaultTimeoutMs: 5_000 });
});
afterAll(async () => {
  client?.close();
  await srv?.shutdown(100);
  await closeSvc?.();
  await engine?.close();
});

async function codeOf(p: Promise<unknown>): Promise<[Code | "ok", string]> {
  try {
    await p;
    return ["ok", ""];
  } catch (e) {
    const ce = ConnectError.from(e);
    return [ce.code, ce.rawMessage];
  }
}

describe("TokenRangeService over gRPC (memory engine)", () => {
  it("AcquireRange hands out disjoint ranges; links is bounded by 62^7; GetNamespace reads the state", async () => {
    const a = await client.acquireRange({ namespace: "links", size: 10n });
    const b = await client.acquireRange({ namespace: "links" });
    expect([a.start, a.end, a.limit]).toEqual([0n, 10n, 62n ** 7n]);
    expect([b.start, b.end]).toEqual([10n, 1010n]);
    const ns = await client.getNamespace({ namespace: "links" });
    expect(ns.namespace?.next).toBe(1010n);
    expect(ns.namespace?.version).toBe(2n);
    expect(ns.namespace?.updateTime).toBeDefined();
    const other = await client.acquireRange({ namespace: "messages", size: 5n });
    expect(other.limit).toBe(0n);
  });

  it("bad input is InvalidArgument with a reason; unknown namespace state is NotFound", async () => {
    const cases: [Promise<unknown>, RegExp][] = [
      [client.acquireRange({ namespace: "", size: 1n }), /namespace: is required/],
      [client.acquireRange({ namespace: "x".repeat(64), size: 1n }), /at most 63/],
      [client.acquireRange({ namespace: "Bad Name", size: 1n }), /must match/],
      [client.acquireRange({ namespace: "links", size: 1_000_001n }), /size: must be at most 1000000/],
      [client.acquireWorkerId({ namespace: "chat", instanceId: "" }), /instance_id/],
      [client.renewWorkerId({ namespace: "chat", workerId: 5000, leaseId: "x", clientTime: timestampFromMs(Date.now()) }), /worker_id/],
      [client.getNamespace({ namespace: "-x" }), /must match/],
    ];
    for (const [p, re] of cases) {
      const [code, msg] = await codeOf(p);
      expect(code).toBe(Code.InvalidArgument);
      expect(msg).toMatch(re);
    }
    expect((await codeOf(client.getNamespace({ namespace: "nothing-here" })))[0]).toBe(Code.NotFound);
  });

  it("worker-id leases: acquire, renew, rollback FailedPrecondition, release (idempotent), NotFound after", async () => {
    const now = Date.now();
    const a = await client.acquireWorkerId({ namespace: "chat", instanceId: "chat-1@test", clientTime: timestampFromMs(now) });
    expect(a.maxWorkers).toBe(1024);
    expect(a.workerId).toBeLessThan(1024);
    expect(a.renewInterval?.seconds).toBe(10n);
    const r = await client.renewWorkerId({ namespace: "chat", workerId: a.workerId, leaseId: a.leaseId, clientTime: timestampFromMs(now + 10) });
    expect(r.expireTime).toBeDefined();
    const [code] = await codeOf(
      client.renewWorkerId({ namespace: "chat", workerId: a.workerId, leaseId: a.leaseId, clientTime: timestampFromMs(now - 60_000) }),
    );
    expect(code).toBe(Code.FailedPrecondition);
    expect((await client.getNamespace({ namespace: "chat" }).catch(() => undefined))?.namespace).toBeUndefined();
    await client.releaseWorkerId({ namespace: "chat", workerId: a.workerId, leaseId: a.leaseId, lastTime: timestampFromMs(now + 20) });
    await client.releaseWorkerId({ namespace: "chat", workerId: a.workerId, leaseId: a.leaseId });
    expect((await codeOf(client.renewWorkerId({ namespace: "chat", workerId: a.workerId, leaseId: a.leaseId, clientTime: timestampFromMs(now + 30) })))[0]).toBe(Code.NotFound);
  });

  it("a lease client over gRPC serves unique values and counts metrics", async () => {
    const registry = new Registry();
    const ids = createLeaseClient({ namespace: "grpc-lease", source: grpcRangeSource(`127.0.0.1:${srv.port}`), initialSize: 100, registry });
    const seen = new Set<bigint>();
    for (let i = 0; i < 1000; i++) seen.add(await ids.nextAsync());
    expect(seen.size).toBe(1000);
    const { skipped } = await ids.close();
    const text = await registry.metrics();
    expect(text).toMatch(/tokenrange_lease_ids_served_total\{namespace="grpc-lease"\} 1000/);
    expect(text).toMatch(new RegExp(`tokenrange_lease_ids_skipped_total\\{namespace="grpc-lease"\\} ${skipped}`));
    expect(skipped).toBeGreaterThan(0);
  });
});

describe("lease client", () => {
  function fakeSource(): RangeSource & { calls: number; down: boolean } {
    let next = 0n;
    const s = {
      calls: 0,
      down: false,
      async acquire(_ns: string, size: number) {
        s.calls++;
        if (s.down) throw new (await import("../../platform/errors.js")).DomainError("Unavailable", "zookeeper is unavailable");
        const start = next;
        next += BigInt(size);
        return { start, end: next, limit: 0n };
      },
    };
    return s;
  }

  it("next() is synchronous, prefetches at the threshold, serves in order", async () => {
    const src = fakeSource();
    const ids = createLeaseClient({ namespace: "t", source: src, initialSize: 100, prefetchAt: 0.1 });
    expect(ids.next()).toBeUndefined(); // both empty: starts a fetch
    await ids.ready();
    expect(src.calls).toBe(1);
    for (let i = 0; i < 10; i++) expect(ids.next()).toBe(BigInt(i));
    expect(src.calls).toBe(2); // prefetch started at 10%
    await new Promise((r) => setImmediate(r));
    expect(ids.stats().buffered).toBeGreaterThan(90);
    await ids.close();
  });

  it("adapts the size: doubles when ranges go fast, halves when slow", async () => {
    const src = fakeSource();
    let t = 0;
    const ids = createLeaseClient({ namespace: "t", source: src, initialSize: 10, maxSize: 80, targetRangeMs: 1000, now: () => t });
    for (let i = 0; i < 300; i++) await ids.nextAsync();
    expect(ids.stats().nextSize).toBe(80);
    t += 10_000;
    while (ids.stats().rangesAcquired < 12) {
      await ids.nextAsync();
      t += 10_000;
    }
    expect(ids.stats().nextSize).toBe(10);
    await ids.close();
  });

  it("source down: keeps serving the buffered ranges, then Unavailable; recovers when the source is back", async () => {
    const src = fakeSource();
    const ids = createLeaseClient({ namespace: "t", source: src, initialSize: 50, retryMinMs: 5, retryMaxMs: 10 });
    await ids.ready();
    await ids.nextAsync();
    await new Promise((r) => setTimeout(r, 5)); // spare range fetched
    src.down = true;
    let served = 1;
    for (;;) {
      try {
        await ids.nextAsync();
        served++;
      } catch (e) {
        expect(e).toMatchObject({ kind: "Unavailable" });
        break;
      }
    }
    expect(served).toBe(ids.stats().rangesAcquired * 50);
    expect(ids.stats().waits).toBeGreaterThan(0);
    src.down = false;
    expect(typeof (await ids.nextAsync())).toBe("bigint");
    await ids.close();
  });

  it("ResourceExhausted passes through when a bounded namespace runs out", async () => {
    const { DomainError } = await import("../../platform/errors.js");
    const src: RangeSource = { acquire: async () => { throw new DomainError("ResourceExhausted", "exhausted"); } };
    const ids = createLeaseClient({ namespace: "t", source: src });
    await expect(ids.nextAsync()).rejects.toMatchObject({ kind: "ResourceExhausted" });
    await ids.close();
  });
});
