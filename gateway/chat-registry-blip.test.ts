/**
 * bench/README (c): after the gateway's ZooKeeper session expired, its registry watch read the
 * chat servers again and streams placed on that server went dead (open at the client, no
 * keep-alives, never ended). The suspect: ChatPlacement.update() closing the lanes (grpc-js
 * channels) of a server that briefly left the registry, leaving their streams orphaned.
 *
 * Reproduced here in one process on the memory engine, with the real chat server and gateway of
 * the embedded mesh. The chat server's registry node is replaced by one that names it through a
 * TCP proxy (so the gateway's connections to it can be counted, cut and stalled) and is owned by
 * a coordinator session of this test; closing that session and registering again is what the
 * gateway sees around a ZooKeeper session expiry (the server gone from the list, then back with
 * the same id and address). Streams are open through the gateway the whole time. Asserted:
 * - every stream keeps receiving keep-alives across the blip (none open but silent);
 * - the server's lanes are kept, not replaced: new streams after the blip ride the same
 *   connections (no second set of connections while the old streams still hold the first);
 * - streams that rode through the blip still end, with UNAVAILABLE, when their connection dies
 *   (cut, or stalled so that only the lane's keep-alive can notice);
 * - a lane closed under its streams ends them with UNAVAILABLE and a retry hint (grpc-js lets calls
 *   run on over a closed channel; nobody would own them).
 */
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { ChatService } from "../gen/switchboard/chat/v1/chat_pb.js";
import { loadConfig, type Config } from "../platform/config.js";
import { MemoryCoordinationTree as Tree } from "../platform/engines/memory/memory-coordinator.js";
import { meshKeyOf } from "../platform/mesh-secret.js";
import { encodeServerInfo } from "../services/chat/cluster/registry.js";
import { identityAssertionHeaders } from "./auth/interceptor.js";
import { ChatPlacement } from "./chat-placement.js";
import { TcpProxy } from "../platform/engines/cluster/testing/tcp-proxy.js";
import type { MemoryCoordinationTree, MemoryCoordinator } from "../platform/engines/memory/memory-coordinator.js";
import { chatServersPath } from "../services/chat/cluster/registry.js";
import { freePort, waitFor } from "../testkit/processes.js";
import { signHs256 } from "./auth/jwt.js";

const jwtSecret = "chat-registry-blip-test-secret-0123456789abcdef0";
const KEEPALIVE_MS = 200;
const USERS = 40;

let running: Running;
let config: Config;
let proxy: TcpProxy;
let registryPath = "";
let serverId = "";
let entry: Uint8Array;
let session: MemoryCoordinator;
const clients: Client<typeof ChatService>[] = [];

/** The memory engine's coordinator tree (its stand-in for ZooKeeper). */
function tree(): MemoryCoordinationTree {
  // A private field of MemoryCoordinator: the test plays ZooKeeper's part in a session expiry.
  return (running.engine!.coordinator as unknown as { tree: MemoryCoordinationTree }).tree;
}

beforeAll(async () => {
  const env = {
    SWITCHBOARD_ENGINE: "memory",
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "2000",
    SWITCHBOARD_CHAT_DRAIN_WINDOW_MS: "200",
    SWITCHBOARD_CHAT_KEEPALIVE_MS: String(KEEPALIVE_MS),
    // Up to USERS * 3 streams per test, a few per user.
    SWITCHBOARD_STREAMS_PER_IDENTITY: "16",
  };
  config = loadConfig(env);
  registryPath = chatServersPath(config.cassandra.keyspace);
  running = await runEmbedded(config, pino({ level: "silent" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
  await waitFor("the chat server in the registry", async () => ((await chatChecks()).length === 1 ? true : undefined), 20_000);
  // The server's own node is swapped for one naming it through the proxy. Its registration then
  // finds its node gone and waits for the id to be free again (it never is: ours holds it).
  const parent = tree().find(registryPath)!;
  const [id, node] = [...parent.children][0]!;
  serverId = id!;
  const info = JSON.parse(new TextDecoder().decode(node!.data)) as { address: string };
  proxy = new TcpProxy(await freePort(), { host: "127.0.0.1", port: Number(info.address.split(":").at(-1)) });
  await proxy.up();
  entry = new TextEncoder().encode(JSON.stringify({ ...info, address: `127.0.0.1:${proxy.port}` }));
  parent.children.delete(serverId);
  session = tree().session();
  await session.registerEphemeral(`${registryPath}/${serverId}`, entry);
  await waitFor("the gateway to place on the proxied entry", async () =>
    ((await chatChecks()).some((c) => c.name === `chat/${serverId}`) ? true : undefined), 5_000);
  for (let u = 0; u < USERS; u++) {
    const token = signHs256({ sub: `blip-${u}`, exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret);
    const transport = createGrpcTransport({
      baseUrl: `http://127.0.0.1:${running.gatewayPort}`,
      interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
    });
    clients.push(createClient(ChatService, transport));
  }
}, 60_000);

afterAll(async () => {
  await running?.close();
  await proxy?.down();
});

async function chatChecks(): Promise<{ name: string; ok: boolean; detail: string }[]> {
  const body = (await (await fetch(`http://127.0.0.1:${running.gatewayPort}/readyz`)).json()) as { checks: { name: string; ok: boolean; detail: string }[] };
  return body.checks.filter((c) => c.name.startsWith("chat/"));
}

/**
 * What the gateway sees when its ZooKeeper session expires: the server gone, then back as it was.
 * The entry is put back from a watch of our own that fires in the same round as the gateway's,
 * just after it (watches are notified in the order they were set): the gateway has seen the empty
 * list, and the server's own registration (retrying every second) has no moment to take the id.
 */
async function registryBlip(): Promise<void> {
  const watcher = tree().session();
  let sawEmpty = false;
  const back = new Promise<void>((resolve) => {
    watcher.watchChildren(registryPath, (children) => {
      if (children.size > 0 || sawEmpty) return;
      sawEmpty = true;
      session = tree().session();
      void session.registerEphemeral(`${registryPath}/${serverId}`, entry).then(() => resolve());
    });
  });
  await new Promise((r) => setImmediate(r)); // the watcher's first (full) snapshot
  session.close();
  await back;
  watcher.close();
  await waitFor("the gateway to see the server again", async () => ((await chatChecks()).length === 1 ? true : undefined), 5_000);
}

interface OpenStream {
  lastKeepAlive: number;
  end: ConnectError | "closed" | undefined;
  endedAt: number;
  close(): void;
}

async function subscribe(client: Client<typeof ChatService>, deviceId: string): Promise<OpenStream> {
  const abort = new AbortController();
  const s: OpenStream = { lastKeepAlive: 0, end: undefined, endedAt: 0, close: () => abort.abort() };
  let first!: () => void;
  const started = new Promise<void>((r) => (first = r));
  void (async () => {
    try {
      for await (const res of client.subscribe({ deviceId }, { signal: abort.signal })) {
        if (res.events.some((ev) => ev.event.case === "keepAlive")) {
          s.lastKeepAlive = Date.now();
          first();
        }
      }
      s.end = "closed";
    } catch (e) {
      s.end = ConnectError.from(e);
    }
    s.endedAt = Date.now();
    first();
  })();
  await started;
  return s;
}

const openAll = (device: string) => Promise.all(clients.map((c) => subscribe(c, device)));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Open and silent for several keep-alive intervals: what the bench's clients were left with. */
const silent = (streams: readonly OpenStream[]) => streams.filter((s) => s.end === undefined && Date.now() - s.lastKeepAlive > 5 * KEEPALIVE_MS);

function expectAllUnavailable(streams: readonly OpenStream[]): void {
  for (const s of streams) {
    expect(s.end).toBeInstanceOf(ConnectError);
    expect((s.end as ConnectError).code).toBe(Code.Unavailable);
  }
}

describe("a chat server that drops out of the gateway's registry view and comes back", () => {
  it("keeps its streams alive and its lanes in use; they end with UNAVAILABLE when the connection is cut", async () => {
    const before = await openAll("a-1");
    const connections = proxy.connectionsAccepted;
    await registryBlip();
    await sleep(5 * KEEPALIVE_MS);
    expect(silent(before)).toEqual([]);
    expect(before.filter((s) => s.end !== undefined)).toEqual([]);

    // New streams after the blip: on the lanes the server already has, not on a second set.
    const after = await openAll("a-2");
    await sleep(5 * KEEPALIVE_MS);
    expect(silent([...before, ...after])).toEqual([]);
    expect(proxy.connectionsAccepted).toBe(connections);

    // The lanes carried through the blip still report their connection's end to every client.
    await proxy.down();
    await waitFor("every stream to end", async () => ([...before, ...after].every((s) => s.end !== undefined) ? true : undefined), 5_000);
    expectAllUnavailable([...before, ...after]);
    await proxy.up();
  }, 60_000);

  it("streams that rode through the blip end with UNAVAILABLE when their connection stalls (lane keep-alive)", async () => {
    await waitFor("the gateway to reconnect through the proxy", async () =>
      ((await chatChecks()).every((c) => c.ok) ? true : undefined), 15_000);
    const streams = await openAll("b-1");
    await registryBlip();
    await sleep(5 * KEEPALIVE_MS);
    expect(silent(streams)).toEqual([]);
    // No byte passes any more and no connection closes: only the gateway's lane keep-alive
    // (ping every 30 s, 10 s to answer) can tell, and it must end every stream it carried.
    proxy.stall();
    await waitFor("every stream to end", async () => (streams.every((s) => s.end !== undefined) ? true : undefined), 50_000);
    expectAllUnavailable(streams);
  }, 90_000);

  it("a placement closed under its streams ends them with UNAVAILABLE and a retry hint", async () => {
    // A placement of our own (a registry of our own listing the chat server directly), so closing
    // it does not touch the gateway's; streams are read from its upstream as the edge reads them.
    const registry = new Tree();
    const path = "/switchboard/blip-own/chat/servers";
    const address = `127.0.0.1:${running.grpcPorts["chat"]}`;
    await registry.session().registerEphemeral(`${path}/chat-own`, encodeServerInfo({ address, streams: 0, draining: false, at: 0 }));
    const placement = new ChatPlacement({ desc: ChatService, coordinator: registry.session(), path, fallbackAddress: "127.0.0.1:1", log: pino({ level: "silent" }) });
    await waitFor("the placement to see the server", async () => (placement.registered.length === 1 ? true : undefined), 5_000);
    const subscribe = placement.upstream()["subscribe"] as unknown as (i: unknown, o: object) => AsyncIterable<unknown>;
    const key = meshKeyOf(config);
    const streams = Array.from({ length: 20 }, (_, i) => {
      const headers = identityAssertionHeaders(key, { userId: `own-${i}`, kind: "user" }, "/switchboard.chat.v1.ChatService/Subscribe");
      const s = { messages: 0, end: undefined as ConnectError | "closed" | undefined, endedAt: 0 };
      void (async () => {
        try {
          for await (const _ of subscribe({ deviceId: "d" }, { headers })) s.messages++;
          s.end = "closed";
        } catch (e) {
          s.end = ConnectError.from(e);
        }
        s.endedAt = Date.now();
      })();
      return s;
    });
    await waitFor("keep-alives on every stream", async () => (streams.every((s) => s.messages > 0) ? true : undefined), 5_000);
    const t0 = Date.now();
    placement.close();
    await waitFor("every stream to end", async () => (streams.every((s) => s.end !== undefined) ? true : undefined), 2_000);
    for (const s of streams) {
      expect(s.end).toBeInstanceOf(ConnectError);
      const err = s.end as ConnectError;
      expect(err.code).toBe(Code.Unavailable);
      expect(err.rawMessage).toMatch(/reconnect.*Sync/);
      expect(err.metadata.get("retry-after-ms")).not.toBeNull();
      expect(s.endedAt - t0).toBeLessThan(1_000);
    }
  }, 30_000);
});
