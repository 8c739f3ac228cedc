/**
 * Issue 12 placement, in one process on the memory engine (its coordinator is the registry):
 * the embedded mesh plus a second chat server on the same engine. Sessions are opened through the
 * gateway over gRPC; each Session's `opened` frame names the server that took it.
 * - 1,000 sessions over two servers land within 10% of even;
 * - a server that shuts down (SIGTERM path: drain) gets no new session, ends its sessions with
 *   UNAVAILABLE and a reconnect hint, spread over the drain window, and every reconnect lands on
 *   the other server.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { ChatService, SessionRequestSchema, type SessionRequest } from "../gen/switchboard/chat/v1/chat_pb.js";
import { loadConfig } from "../platform/config.js";
import type { RunningGrpcServer } from "../platform/grpc/server.js";
import { chatModule } from "../services/chat/module.js";
import { serveService } from "../services/serve.js";
import { waitFor } from "../testkit/processes.js";
import { signHs256 } from "./auth/jwt.js";

const jwtSecret = "chat-placement-test-secret-0123456789abcdef01234";
const USERS = 100;
const DEVICES = 10;
const DRAIN_WINDOW_MS = 1_500;

let running: Running;
let second: RunningGrpcServer;
/** Registry id of the chat server this file adds (the one that is shut down). */
let secondId = "";
const clients: Client<typeof ChatService>[] = [];

beforeAll(async () => {
  const env = {
    SWITCHBOARD_ENGINE: "memory",
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "10000",
    SWITCHBOARD_CHAT_DRAIN_WINDOW_MS: String(DRAIN_WINDOW_MS),
  };
  const config = loadConfig(env);
  const log = pino({ level: "silent" });
  running = await runEmbedded(config, log, { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
  const [embedded] = await waitFor("the embedded chat server in the registry", async () => {
    const c = await chatChecks();
    return c.length === 1 ? c : undefined;
  });
  second = await serveService(
    chatModule,
    { config, log, engine: running.engine!, upstreamAddress: (name) => `127.0.0.1:${running.grpcPorts[name]}` },
    { host: "127.0.0.1", port: 0 },
  );
  for (let u = 0; u < USERS; u++) {
    const token = signHs256({ sub: `pl-${u}`, exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret);
    // One HTTP/2 connection per user: 10 sessions each, well under the per-connection stream cap.
    const transport = createGrpcTransport({
      baseUrl: `http://127.0.0.1:${running.gatewayPort}`,
      interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
    });
    clients.push(createClient(ChatService, transport));
  }
  const both = await waitFor("two chat servers in the registry", async () => {
    const c = await chatChecks();
    return c.length === 2 ? c : undefined;
  }, 20_000);
  secondId = both.map((c) => c.name.slice("chat/".length)).find((id) => `chat/${id}` !== embedded!.name)!;
}, 60_000);

let meshClosed = false;
afterAll(async () => {
  await second?.shutdown(1_000);
  if (!meshClosed) await running?.close();
});

async function chatChecks(): Promise<{ name: string; ok: boolean; detail: string }[]> {
  const body = (await (await fetch(`http://127.0.0.1:${running.gatewayPort}/readyz`)).json()) as { checks: { name: string; ok: boolean; detail: string }[] };
  return body.checks.filter((c) => c.name.startsWith("chat/"));
}

/** An open Session: the server that took it, and how it ended (undefined while open). */
interface OpenSession {
  serverId: string;
  end: ConnectError | "closed" | undefined;
  retryAfterMs: number | undefined;
  endedAt: number;
  close(): void;
}

async function openSession(client: Client<typeof ChatService>, deviceId: string): Promise<OpenSession> {
  const abort = new AbortController();
  const closed = new Promise<void>((r) => abort.signal.addEventListener("abort", () => r(), { once: true }));
  async function* frames(): AsyncGenerator<SessionRequest> {
    yield create(SessionRequestSchema, { frame: { case: "open", value: { deviceId } } });
    await closed;
  }
  const s: OpenSession = { serverId: "", end: undefined, retryAfterMs: undefined, endedAt: 0, close: () => abort.abort() };
  let opened!: () => void;
  let failed!: (e: unknown) => void;
  const first = new Promise<void>((resolve, reject) => ((opened = resolve), (failed = reject)));
  void (async () => {
    try {
      for await (const f of client.session(frames(), { signal: abort.signal })) {
        if (f.frame.case === "opened") {
          s.serverId = f.frame.value.serverId;
          opened();
        }
      }
      s.end = "closed";
    } catch (e) {
      const err = ConnectError.from(e);
      s.end = err;
      const hint = err.metadata.get("retry-after-ms");
      s.retryAfterMs = hint === null ? undefined : Number(hint);
      failed(err);
    }
    s.endedAt = Date.now();
    // As a client does once the answer ended: close our side too (HTTP/2 keeps a half-open stream).
    abort.abort();
  })();
  await first;
  return s;
}

const countBy = (sessions: readonly OpenSession[]) => {
  const m = new Map<string, number>();
  for (const s of sessions) m.set(s.serverId, (m.get(s.serverId) ?? 0) + 1);
  return m;
};

describe("placement of chat sessions over two servers", () => {
  const sessions: OpenSession[] = [];

  it(`places ${USERS * DEVICES} sessions within 10% of even`, async () => {
    // Opened in waves, as clients arrive: each wave sees the load the servers last reported.
    for (let d = 0; d < DEVICES; d++) {
      sessions.push(...(await Promise.all(clients.map((c) => openSession(c, `dev-${d}`)))));
    }
    const counts = countBy(sessions);
    console.log(`chat-placement: ${sessions.length} sessions -> ${[...counts.values()].join(" / ")}`);
    expect(counts.size).toBe(2);
    for (const n of counts.values()) {
      expect(n).toBeGreaterThanOrEqual(sessions.length * 0.45);
      expect(n).toBeLessThanOrEqual(sessions.length * 0.55);
    }
    // The registry caught up with the same numbers (what other gateways place by).
    const reported = await waitFor("the servers' reports", async () => {
      const checks = await chatChecks();
      const total = checks.reduce((a, c) => a + Number(/(\d+) streams/.exec(c.detail)?.[1] ?? 0), 0);
      return total === sessions.length ? checks : undefined;
    });
    expect(reported.every((c) => c.ok)).toBe(true);
    // Placement decisions and the registry as this gateway sees it, in its metrics.
    const metrics = await running.metrics!.metrics();
    const placed = [...metrics.matchAll(/^gateway_chat_placements_total\{kind="stream",server="(chat-[0-9a-f]+)"\} (\d+)$/gm)];
    expect(new Map(placed.map((m) => [m[1], Number(m[2])]))).toEqual(counts);
    expect(metrics).toMatch(/^gateway_chat_servers\{state="serving"\} 2$/m);
    expect(metrics).toMatch(/^gateway_chat_server_streams\{server="chat-[0-9a-f]+"\} \d+$/m);
  }, 120_000);

  it("a shutting-down server takes no new session, ends its own with a reconnect hint, and they all land on the other", async () => {
    const drainingServer = secondId;
    const onSecond = sessions.filter((s) => s.serverId === drainingServer);
    const staying = sessions.filter((s) => s.serverId !== drainingServer);
    expect(onSecond.length).toBeGreaterThan(0);

    const t0 = Date.now();
    const stopping = second.shutdown(10_000);
    // While it drains: new sessions all go to the other server.
    await waitFor("the draining flag at the gateway", async () =>
      (await chatChecks()).some((c) => c.name === `chat/${drainingServer}` && c.detail.startsWith("draining")) ? true : undefined,
    5_000);
    const fresh = await Promise.all(clients.slice(0, 50).map((c, i) => openSession(c, `fresh-${i}`)));
    expect(fresh.filter((s) => s.serverId === drainingServer)).toEqual([]);
    await stopping;
    const elapsed = Date.now() - t0;
    // The server is down once its side of every stream ended; the ends still cross the gateway to the clients.
    await waitFor("the drained sessions' ends at their clients", async () => (onSecond.every((s) => s.end !== undefined) ? true : undefined), 5_000);

    // Every session of the stopped server ended with UNAVAILABLE, told to reconnect and Sync,
    // at moments spread over the window (not all in one instant).
    for (const s of onSecond) {
      expect(s.end).toBeInstanceOf(ConnectError);
      const err = s.end as ConnectError;
      expect(err.code).toBe(Code.Unavailable);
      expect(err.rawMessage).toMatch(/reconnect.*Sync/);
      expect(s.retryAfterMs).toBeGreaterThanOrEqual(0);
    }
    const ends = onSecond.map((s) => s.endedAt).sort((a, b) => a - b);
    const spreadMs = ends[ends.length - 1]! - ends[0]!;
    console.log(`chat-placement: drained ${onSecond.length} sessions over ${spreadMs} ms (shutdown took ${elapsed} ms)`);
    expect(spreadMs).toBeGreaterThan(DRAIN_WINDOW_MS * 0.5);
    // Not the 10 s grace: the streams were ended, not waited for.
    expect(elapsed).toBeLessThan(8_000);
    // The other server's sessions were not touched.
    expect(staying.every((s) => s.end === undefined)).toBe(true);

    // Reconnects (same devices) all land on the remaining server.
    const again = await Promise.all(
      onSecond.map((s) => {
        const idx = sessions.indexOf(s);
        return openSession(clients[idx % USERS]!, `dev-${Math.floor(idx / USERS)}`);
      }),
    );
    expect(new Set(again.map((s) => s.serverId))).toEqual(new Set([staying[0]!.serverId]));
    for (const s of [...again, ...fresh, ...staying]) s.close();
  }, 60_000);

  it("the gateway's own shutdown ends its streams with a reconnect hint, spread out, instead of waiting out the grace period", async () => {
    // New connections: the earlier tests reset many streams on theirs (the gateway's rapid-reset
    // guard may be closing those sessions).
    const fresh = Array.from({ length: 40 }, (_, u) => {
      const token = signHs256({ sub: `pl-last-${u}`, exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret);
      return createClient(ChatService, createGrpcTransport({
        baseUrl: `http://127.0.0.1:${running.gatewayPort}`,
        interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
      }));
    });
    const open = await Promise.all(fresh.map((c, i) => openSession(c, `last-${i}`)));
    const t0 = Date.now();
    meshClosed = true;
    await running.close(); // grace 10 s, drain window 1.5 s
    const elapsed = Date.now() - t0;
    for (const s of open) {
      expect(s.end).toBeInstanceOf(ConnectError);
      expect((s.end as ConnectError).code).toBe(Code.Unavailable);
      expect((s.end as ConnectError).rawMessage).toMatch(/gateway is shutting down: reconnect/);
      expect(s.retryAfterMs).toBeGreaterThanOrEqual(0);
    }
    const ends = open.map((s) => s.endedAt).sort((a, b) => a - b);
    console.log(`chat-placement: gateway shutdown ended ${open.length} sessions over ${ends.at(-1)! - ends[0]!} ms, closed in ${elapsed} ms`);
    expect(ends.at(-1)! - ends[0]!).toBeGreaterThan(DRAIN_WINDOW_MS * 0.3);
    expect(elapsed).toBeLessThan(8_000);
  }, 30_000);
});
