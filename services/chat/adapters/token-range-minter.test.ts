/**
 * The token-range IdMinter against a real TokenRangeService gRPC server on the memory engine.
 * Leases use the service's shortest TTL (5 s), so the renewal and outage cases take seconds of
 * real time: these wait for lease deadlines, they assert nothing about speed.
 */
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenRangeService } from "../../../gen/switchboard/tokenrange/v1/tokenrange_pb.js";
import type { Config } from "../../../platform/config.js";
import { openMemoryEngine, type Engine } from "../../../platform/engine.js";
import { silentLog } from "../../../platform/engines/log.js";
import { isDomainError } from "../../../platform/errors.js";
import { createGrpcClient } from "../../../platform/grpc/client.js";
import { grpcService, startGrpcServer, type RunningGrpcServer } from "../../../platform/grpc/server.js";
import { freePort } from "../../../testkit/servers/index.js";
import { noUpstreams } from "../../module.js";
import { tokenrangeModule } from "../../tokenrange/module.js";
import { decodeSnowflake } from "../../tokenrange/snowflake.js";
import { tokenRangeIdMinter, type TokenRangeIdMinter, type TokenRangeMinterOptions } from "./token-range-minter.js";

const log = pino({ level: "silent" });
const TTL = 5_000;

/** A token-range service whose gRPC server can be stopped and restarted on the same port (the leases live on). */
class TokenRange {
  private srv: RunningGrpcServer | undefined;
  private constructor(
    readonly engine: Engine,
    private readonly svc: Awaited<ReturnType<typeof tokenrangeModule.create>>,
    readonly port: number,
  ) {}
  static async start(port = 0): Promise<TokenRange> {
    const engine = openMemoryEngine(silentLog);
    const svc = await tokenrangeModule.create({ engine, log, config: {} as Config, upstreamAddress: noUpstreams });
    const t = new TokenRange(engine, svc, port || (await freePort()));
    await t.up();
    return t;
  }
  get target(): string {
    return `127.0.0.1:${this.port}`;
  }
  async up(): Promise<void> {
    this.srv = await startGrpcServer({ services: [grpcService(TokenRangeService, this.svc.impl)], port: this.port, host: "127.0.0.1", log });
  }
  async down(): Promise<void> {
    await this.srv?.shutdown(0);
    this.srv = undefined;
  }
  async close(): Promise<void> {
    await this.down();
    await this.svc.close?.();
    await this.engine.close();
  }
}

const minters: TokenRangeIdMinter[] = [];
async function minter(tr: { target: string }, opts: Partial<TokenRangeMinterOptions> = {}): Promise<TokenRangeIdMinter> {
  const m = await tokenRangeIdMinter({ target: tr.target, instanceId: `chat-${minters.length}@test`, log: silentLog, ttlMs: TTL, retryMaxMs: 200, ...opts });
  minters.push(m);
  return m;
}

function tryNext(m: TokenRangeIdMinter): bigint | Error {
  try {
    return m.next();
  } catch (e) {
    return e as Error;
  }
}

async function until<T>(what: string, f: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let shared: TokenRange;
beforeAll(async () => {
  shared = await TokenRange.start();
});
afterAll(async () => {
  await Promise.all(minters.map((m) => m.close()));
  await shared?.close();
});

describe("token-range IdMinter (real TokenRangeService over gRPC, memory engine)", () => {
  it("two minters hold distinct worker ids; each mints strictly increasing ids; none collide", async () => {
    const a = await minter(shared);
    const b = await minter(shared);
    expect(a.lease()!.workerId).not.toBe(b.lease()!.workerId);
    const seen = new Set<bigint>();
    const last = new Map<TokenRangeIdMinter, bigint>([[a, 0n], [b, 0n]]);
    for (let i = 0; i < 20_000; i++) {
      const m = i % 3 === 0 ? b : a;
      const id = m.next();
      expect(id).toBeGreaterThan(last.get(m)!);
      last.set(m, id);
      seen.add(id);
      expect(decodeSnowflake(id).workerId).toBe(m.lease()!.workerId);
    }
    expect(seen.size).toBe(20_000);
  });

  it("renewal keeps minting past the lease TTL", async () => {
    const m = await minter(shared);
    const firstExpiry = m.lease()!.expireAtMs;
    const start = Date.now();
    let prev = 0n;
    let minted = 0;
    while (Date.now() < start + TTL + 1_500) {
      const id = m.next(); // throws (fails the test) if minting ever stops
      expect(id).toBeGreaterThan(prev);
      prev = id;
      minted++;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(decodeSnowflake(prev).timeMs).toBeGreaterThan(firstExpiry);
    expect(m.lease()!.expireAtMs).toBeGreaterThan(firstExpiry);
    expect(minted).toBeGreaterThan(10);
  }, 20_000);

  it("close releases the worker id (the namespace shows it free) and next() is Unavailable after", async () => {
    const ns = "chat-release";
    const client = createGrpcClient(TokenRangeService, shared.target, { defaultTimeoutMs: 5_000 });
    try {
      await client.acquireRange({ namespace: ns, size: 1n }); // GetNamespace reads only namespaces with a counter
      const m = await minter(shared, { namespace: ns });
      m.next();
      expect((await client.getNamespace({ namespace: ns })).namespace?.activeWorkers).toBe(1);
      await m.close();
      expect((await client.getNamespace({ namespace: ns })).namespace?.activeWorkers).toBe(0);
      const err = tryNext(m);
      expect(isDomainError(err) && err.kind).toBe("Unavailable");
      expect((err as Error).message).toMatch(/closed/);
    } finally {
      client.close();
    }
  });

  it("token-range down: minting stops with Unavailable before the lease expires; after a restart it resumes on a new lease", async () => {
    const tr = await TokenRange.start();
    try {
      const m = await minter(tr);
      const before = m.lease()!;
      m.next();
      await tr.down();
      const ids: bigint[] = [];
      let err: Error | undefined;
      while (!err) {
        const r = tryNext(m);
        if (typeof r === "bigint") ids.push(r);
        else err = r;
        if (!err) await new Promise((r) => setTimeout(r, 10));
      }
      const stoppedAt = Date.now();
      const held = m.lease()!;
      expect(isDomainError(err) && err.kind).toBe("Unavailable");
      expect(err.message).toMatch(/not renewed in time/);
      // Whoever gets this worker id next mints only after expireAt: we stopped before it.
      expect(stoppedAt).toBeLessThan(held.expireAtMs);
      expect(held.workerId).toBe(before.workerId);
      for (const id of ids) expect(decodeSnowflake(id).timeMs).toBeLessThan(held.mintUntilMs + 1);
      expect(ids.length).toBeGreaterThan(0);

      // Past the expiry the service frees the id; the renewal then gets NOT_FOUND and a new lease is taken.
      await until("lease expiry", () => Date.now() > held.expireAtMs + 1_500);
      await tr.up();
      const resumed = await until("minting resumes", () => {
        const r = tryNext(m);
        return typeof r === "bigint" ? r : undefined;
      });
      expect(m.lease()!.leaseId).not.toBe(held.leaseId);
      expect(resumed).toBeGreaterThan(ids.at(-1)!);
      expect(decodeSnowflake(resumed).workerId).toBe(m.lease()!.workerId);
    } finally {
      await tr.close();
    }
  }, 40_000);

  it("clock rollback: token-range answers FAILED_PRECONDITION on renewal -> minting stops; resumes once the clock catches up", async () => {
    let offset = 0;
    const m = await minter(shared, { now: () => Date.now() + offset });
    const first = m.lease()!.expireAtMs;
    await until("first renewal (records our clock)", () => m.lease()!.expireAtMs > first);
    // Nothing minted yet, so only token-range's record of our clock can notice the step back.
    offset = -30_000;
    const reason = await until("rollback noticed", () => m.pausedReason()?.match(/clock went backwards/) ?? undefined, 10_000);
    expect(reason).toBeTruthy();
    const err = tryNext(m);
    expect(isDomainError(err) && err.kind).toBe("Unavailable");
    expect((err as Error).message).toMatch(/clock went backwards/);
    offset = 0;
    const id = await until("minting resumes", () => {
      const r = tryNext(m);
      return typeof r === "bigint" ? r : undefined;
    }, 10_000);
    expect(decodeSnowflake(id).workerId).toBe(m.lease()!.workerId);
  }, 30_000);

  it("clock rollback after minting: the generator refuses at once (Unavailable, not a duplicate-prone id)", async () => {
    let offset = 0;
    const m = await minter(shared, { now: () => Date.now() + offset });
    const a = m.next();
    offset = -10_000;
    const err = tryNext(m);
    expect(isDomainError(err) && err.kind).toBe("Unavailable");
    expect((err as Error).message).toMatch(/clock is \d+ ms behind/);
    offset = 0;
    expect(m.next()).toBeGreaterThan(a);
  });

  it("starts while token-range is not up yet: Unavailable until the first lease, then mints", async () => {
    const port = await freePort();
    const m = await minter({ target: `127.0.0.1:${port}` }, { startupWaitMs: 200 });
    expect(m.lease()).toBeUndefined();
    const err = tryNext(m);
    expect(isDomainError(err) && err.kind).toBe("Unavailable");
    expect((err as Error).message).toMatch(/AcquireWorkerId failed/);
    const tr = await TokenRange.start(port);
    try {
      const id = await until("first lease", () => {
        const r = tryNext(m);
        return typeof r === "bigint" ? r : undefined;
      });
      expect(decodeSnowflake(id).workerId).toBe(m.lease()!.workerId);
    } finally {
      await m.close();
      await tr.close();
    }
  }, 30_000);

  it("a bad namespace is a configuration error: the promise rejects with InvalidArgument", async () => {
    await expect(tokenRangeIdMinter({ target: shared.target, instanceId: "chat@test", log: silentLog, namespace: "Bad Name" })).rejects.toMatchObject({
      kind: "InvalidArgument",
      message: expect.stringMatching(/namespace/),
    });
  });
});
