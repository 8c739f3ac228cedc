// The shortener leases its code ranges from a real token-range gRPC server (memory engine) and
// that server is stopped mid-run: buffered codes keep creates working, then Unavailable naming
// token-range (nothing internal), custom aliases still work, and creates recover after restart.
import { Code, ConnectError } from "@connectrpc/connect";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ShortenerService } from "../../gen/switchboard/shortener/v1/shortener_pb.js";
import { TokenRangeService } from "../../gen/switchboard/tokenrange/v1/tokenrange_pb.js";
import type { Config } from "../../platform/config.js";
import { openMemoryEngine, type Engine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import { createGrpcClient, type GrpcClient } from "../../platform/grpc/client.js";
import { grpcService, startGrpcServer, type RunningGrpcServer } from "../../platform/grpc/server.js";
import { verifiedIdentity } from "../../platform/grpc/verified-identity.js";
import { actingAs, signingClient, testMeshKey } from "../../testkit/mesh-identity.js";
import { freePort, waitFor } from "../../testkit/processes.js";
import { MemoryLinkStore } from "../links/adapters/memory-link-store.js";
import { noUpstreams } from "../module.js";
import { DEV_CODE_KEY, grpcRangeSource } from "../tokenrange/index.js";
import { tokenrangeModule } from "../tokenrange/module.js";
import { leasedCodeSource } from "./adapters/leased-code-source.js";
import { shortenerImpl } from "./module.js";
import type { CodeSource } from "./ports.js";
import { Shortener } from "./service.js";

const log = pino({ level: "silent" });
const RANGE = 10;
let engine: Engine;
let trPort: number;
let tokenrange: RunningGrpcServer | undefined;
let closeTokenrange: (() => Promise<void>) | undefined;
let codes: CodeSource;
let server: RunningGrpcServer;
let client: GrpcClient<typeof ShortenerService>;
let leased = 0;

async function startTokenrange(): Promise<void> {
  const svc = await tokenrangeModule.create({ engine, log, config: {} as Config, upstreamAddress: noUpstreams });
  closeTokenrange = svc.close?.bind(svc);
  tokenrange = await startGrpcServer({ services: [grpcService(TokenRangeService, svc.impl)], host: "127.0.0.1", port: trPort, log });
}
async function stopTokenrange(): Promise<void> {
  await tokenrange?.shutdown(100);
  await closeTokenrange?.();
  tokenrange = undefined;
}

beforeAll(async () => {
  engine = openMemoryEngine(silentLog);
  trPort = await freePort();
  await startTokenrange();
  // Small fixed ranges so the buffer runs dry within the test: 10 current + 10 prefetched.
  const grpc = grpcRangeSource(`127.0.0.1:${trPort}`, { timeoutMs: 2_000 });
  codes = leasedCodeSource({
    source: {
      acquire: async (ns, size) => {
        const r = await grpc.acquire(ns, size);
        leased++;
        return r;
      },
      close: () => grpc.close?.(),
    },
    key: () => DEV_CODE_KEY,
    lease: { initialSize: RANGE, minSize: RANGE, maxSize: RANGE, retryMaxMs: 200 },
  });
  const shortener = new Shortener({ store: new MemoryLinkStore(), codes, policy: { ownHosts: ["sb.example"], blockedDomains: new Set() } });
  server = await startGrpcServer({ services: [grpcService(ShortenerService, shortenerImpl(shortener))], port: 0, log, contextValues: verifiedIdentity(testMeshKey) });
  client = signingClient(createGrpcClient(ShortenerService, `127.0.0.1:${server.port}`, { defaultTimeoutMs: 10_000 }), ShortenerService);
});

afterAll(async () => {
  client?.close();
  await server?.shutdown(100);
  await codes?.close?.();
  await stopTokenrange();
  await engine?.close();
});

const create = (longUrl: string, extra: { customAlias?: string } = {}) => client.createLink({ longUrl, ...extra }, actingAs("outage-user"));

describe("shortener with token-range down", () => {
  it("serves the buffered codes, then Unavailable naming token-range; recovers after restart", async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 3; i++) seen.add((await create(`https://example.com/before/${i}`)).link!.code);
    // The background prefetch of the second range lands before the cut.
    await waitFor("the prefetched range", async () => (leased === 2 ? true : undefined), 10_000);
    await stopTokenrange();

    let served = 0;
    let failure: ConnectError | undefined;
    for (let i = 0; i < 3 * RANGE && !failure; i++) {
      try {
        seen.add((await create(`https://example.com/during/${i}`)).link!.code);
        served++;
      } catch (e) {
        failure = ConnectError.from(e);
      }
    }
    // 7 left of the first range + the whole prefetched one: every buffered code, none invented.
    expect(served).toBe(2 * RANGE - 3);
    expect(failure?.code).toBe(Code.Unavailable);
    expect(failure?.rawMessage).toMatch(/token-range service cannot be reached/);
    expect(failure?.rawMessage).not.toMatch(/127\.0\.0\.1|ECONNREFUSED|Resolution note/);
    // Custom aliases need no counter.
    expect((await create("https://example.com/alias", { customAlias: "outage-alias" })).link!.code).toBe("outage-alias");

    await startTokenrange();
    const after = await waitFor(
      "creates to recover once token-range is back",
      async () => (await create("https://example.com/after")).link!.code,
      15_000,
    );
    seen.add(after);
    expect(seen.size).toBe(3 + served + 1);
  }, 30_000);
});
