// The cluster run as deployed: every service and the gateway in its own process, configured
// only by environment, on real Cassandra, ZooKeeper, NATS and Redis. Also the acceptance for
// issue 8 finding 7 there: a service's internal port takes no identity without the gateway's proof.
import { Code, ConnectError } from "@connectrpc/connect";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signHs256 } from "../gateway/auth/jwt.js";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { loadConfig, SERVICE_NAMES, upstreamVariable } from "../platform/config.js";
import { createGrpcClient } from "../platform/grpc/client.js";
import { meshKey } from "../platform/identity-assertion.js";
import { openEngine, type Engine } from "../platform/engine.js";
import { createLinkStore } from "../services/links/store.js";
import { infra, uniqueKeyspaceName, dropKeyspace } from "../testkit/keyspace.js";
import { assertionHeaders } from "../testkit/mesh-identity.js";
import { freePort, spawnSwitchboard, waitFor, type MeshProcess } from "../testkit/processes.js";
import { infraEnv } from "../testkit/servers/index.js";

const keyspace = uniqueKeyspaceName("cluster_run");
/** One Connect streaming envelope (flags 0, big-endian length, the JSON message). */
const envelope = (json: string): ArrayBuffer => {
  const body = Buffer.from(json);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  const b = Buffer.concat([head, body]);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length) as ArrayBuffer;
};
const JWT_SECRET = "cluster-test-secret-0123456789abcdef0123456789";
const procs: MeshProcess[] = [];
let gatewayUrl: string;
let upstreams: Record<string, string> = {};
let engine: Engine | undefined;

beforeAll(async () => {
  const env: Record<string, string> = {
    ...infraEnv(infra()),
    SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace,
    SWITCHBOARD_JWT_HS256_SECRET: JWT_SECRET,
  };
  for (const name of SERVICE_NAMES) env[upstreamVariable(name)] = `127.0.0.1:${await freePort()}`;
  upstreams = Object.fromEntries(SERVICE_NAMES.map((name) => [name, env[upstreamVariable(name)]!]));
  for (const name of SERVICE_NAMES) {
    procs.push(spawnSwitchboard([name], { ...env, SWITCHBOARD_GRPC_PORT: env[upstreamVariable(name)]!.split(":")[1]! }));
  }
  const gatewayPort = await freePort();
  procs.push(spawnSwitchboard(["gateway"], { ...env, SWITCHBOARD_GATEWAY_PORT: String(gatewayPort) }));
  gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  engine = await openEngine(loadConfig(env), pino({ level: "silent" }));
}, 120_000);

afterAll(async () => {
  const codes = await Promise.all(procs.map((p) => p.stop()));
  await engine?.close();
  await dropKeyspace(keyspace);
  // Every process drained and exited by itself on SIGTERM.
  expect(codes).toEqual(procs.map(() => 0));
});

describe("cluster run: one process per service", () => {
  it("becomes ready once every service reports its backends up", async () => {
    const report = await waitFor(
      "gateway /readyz",
      async () => {
        const res = await fetch(`${gatewayUrl}/readyz`);
        const body = (await res.json()) as { degraded: string[]; checks: { name: string; kind: string; ok: boolean }[] };
        // Ready (200) comes as soon as the link store is up; wait for every service as well.
        const chatRegistered = body.checks.some((c) => c.name.startsWith("chat/"));
        return res.status === 200 && body.degraded.length === 0 && chatRegistered ? body : undefined;
      },
      90_000,
    );
    const services = report.checks.filter((c) => c.ok && c.kind === "service").map((c) => c.name);
    expect(services.filter((n) => !n.startsWith("chat/")).sort()).toEqual([...SERVICE_NAMES].sort());
    // The chat process registered itself: /readyz lists it by id.
    expect(services.filter((n) => n.startsWith("chat/"))).toHaveLength(1);
  }, 100_000);

  it("resolves a link stored in Cassandra through gateway -> redirect process", async () => {
    const store = await createLinkStore(engine!);
    await store.insertIfAbsent({
      code: "clst001",
      longUrl: "https://example.org/cluster",
      ownerId: "u1",
      createdAt: new Date(),
      redirectType: 302,
    });
    const res = await fetch(`${gatewayUrl}/switchboard.redirect.v1.RedirectService/Resolve`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ code: "clst001" }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      code: "clst001",
      longUrl: "https://example.org/cluster",
      redirectType: "REDIRECT_TYPE_TEMPORARY",
    });
  });

  it("chat in its own process: ids leased from the token-range process, messages in Cassandra, live to a subscriber", async () => {
    const token = (sub: string) => signHs256({ sub, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600 }, JWT_SECRET);
    const call = async (sub: string, method: string, body: unknown) => {
      const res = await fetch(`${gatewayUrl}/switchboard.chat.v1.ChatService/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token(sub)}` },
        body: JSON.stringify(body),
      });
      const json = (await res.json()) as Record<string, unknown>;
      if (res.status !== 200) throw new Error(`${method}: HTTP ${res.status} ${JSON.stringify(json)}`);
      return json;
    };
    const channel = ((await call("cl-alice", "CreateDirectChannel", { peerUserId: "cl-bob" })) as { channel: { channelId: string } }).channel;
    // Bob's device subscribed over Connect's server-streaming JSON (HTTP/1.1).
    const ac = new AbortController();
    const live = fetch(`${gatewayUrl}/switchboard.chat.v1.ChatService/Subscribe`, {
      method: "POST",
      headers: { "content-type": "application/connect+json", authorization: `Bearer ${token("cl-bob")}` },
      body: envelope(JSON.stringify({ deviceId: "phone" })),
      signal: ac.signal,
    });
    let text = "";
    const reading = live.then(async (res) => {
      const reader = res.body!.getReader();
      for (;;) {
        const r = await reader.read().catch(() => ({ done: true, value: undefined }));
        if (r.done) return;
        text += Buffer.from(r.value!).toString("utf8");
      }
    });
    // Sent until one arrives live: the subscription may not be attached yet when the first goes
    // out, and the chat process may still be leasing its worker id.
    const ids: string[] = [];
    await waitFor(
      "a message sent by alice, live at bob's device",
      async () => {
        const sent = await call("cl-alice", "SendMessage", { channelId: channel.channelId, clientMessageId: `cl-${ids.length}`, text: "across processes" }).catch(() => undefined);
        if (sent) ids.push((sent as { message: { messageId: string } }).message.messageId);
        await new Promise((r) => setTimeout(r, 300));
        return ids.some((id) => text.includes(`"messageId":"${id}"`)) ? true : undefined;
      },
      30_000,
    );
    ac.abort();
    await reading;
    for (const id of ids) expect(id).toMatch(/^\d{15,20}$/);
    const history = (await call("cl-bob", "GetHistory", { channelId: channel.channelId })) as { messages: { messageId: string; text: string }[] };
    expect(history.messages.map((m) => m.messageId)).toEqual(ids);
  });

  it("the shortener's internal port refuses identities without the gateway's proof; the gateway's path works", async () => {
    const token = (sub: string) => signHs256({ sub, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600 }, JWT_SECRET);
    const created = await fetch(`${gatewayUrl}/api/v1/shorten`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token("cluster-bob")}` },
      body: JSON.stringify({ long_url: "https://example.org/bobs-private" }),
    });
    expect(created.status).toBe(201);
    const bobCode = ((await created.json()) as { code: string }).code;

    // Through the gateway with bob's token: bob's link.
    const listed = await fetch(`${gatewayUrl}/switchboard.shortener.v1.ShortenerService/ListLinks`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token("cluster-bob")}` },
      body: "{}",
    });
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as { links: { code: string }[] }).links.map((l) => l.code)).toEqual([bobCode]);

    // Straight to the shortener process, as any container on the network could.
    const internal = createGrpcClient(ShortenerService, upstreams["shortener"]!, { defaultTimeoutMs: 10_000 });
    try {
      const listLinks = ShortenerService.method.listLinks;
      const attempts: [string, Record<string, string> | Headers][] = [
        ["plain x-switchboard-user", { "x-switchboard-user": "cluster-bob", "x-switchboard-auth-kind": "user" }],
        ["wrong secret", assertionHeaders("cluster-bob", listLinks, { key: meshKey("guessed-mesh-secret-0123456789abcdef0123") })],
        ["expired", assertionHeaders("cluster-bob", listLinks, { nowMs: Date.now() - 120_000 })],
        ["issued for GetLink", assertionHeaders("cluster-bob", ShortenerService.method.getLink)],
      ];
      for (const [name, headers] of attempts) {
        const outcome = await internal.listLinks({ pageSize: 100 }, { headers }).then(
          (r) => `answered ${r.links.length} links`,
          (e: unknown) => (e instanceof ConnectError ? Code[e.code] : String(e)),
        );
        expect(`${name}: ${outcome}`).toBe(`${name}: ${Code[Code.Unauthenticated]}`);
      }
      // Control: the shortener does verify with the mesh secret every process was given.
      const proven = await internal.listLinks({ pageSize: 100 }, { headers: assertionHeaders("cluster-bob", listLinks) });
      expect(proven.links.map((l) => l.code)).toEqual([bobCode]);
    } finally {
      internal.close();
    }
  });

  it("public /readyz names no internal address", async () => {
    const text = await (await fetch(`${gatewayUrl}/readyz`)).text();
    expect(JSON.parse(text)).toMatchObject({ checks: expect.arrayContaining([{ name: "shortener", kind: "service", critical: false, ok: true, detail: "serving" }]) });
    expect(text).not.toContain("127.0.0.1");
    for (const address of Object.values(upstreams)) expect(text).not.toContain(address.split(":")[1]!);
  });
});
