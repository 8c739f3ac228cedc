/**
 * The public edge: one port, HTTP/1.1 and h2c; Connect, gRPC and gRPC-web for the public
 * services (forwarded to internal gRPC servers); gRPC reflection for operators; health and
 * readiness (Prometheus metrics only when asked: they have a listener of their own, see
 * platform/metrics-server.ts); CORS for browsers. Plain-HTTP doors (REST shorten,
 * redirects) are matched before the Connect router because they are the hot path.
 */
import { randomUUID } from "node:crypto";
import type http from "node:http";
import type http2 from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import type { ContextValues, Interceptor, ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { GatewayLimits } from "../platform/config.js";
import { INTERNAL_HEADER_PREFIX } from "../platform/identity.js";
import { createCors } from "./cors.js";
import type { Admission } from "./auth/admission.js";
import { homePage, prefersHtml, sendHtml } from "./html-pages.js";
import { HEALTHZ_PATH, HOME_PATH, METRICS_PATH, READYZ_PATH } from "./own-paths.js";
import { createOnePortServer, type OnePortServer } from "./one-port.js";
import { watchTlsContext, type TlsFiles } from "./tls-context.js";
import type { ReadinessProbe } from "./readiness.js";
import { createRpcHandler } from "./rpc-handler.js";
import { createMessageLimits, type MessageLimits } from "./rpc-limits.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

export interface MountedService {
  readonly desc: DescService;
  readonly impl: ServiceImpl<DescService>;
}

/** A plain-HTTP door tried before the Connect router; returns false when the request is not its. */
export type HttpDoor = (req: Req, res: Res, log: Logger) => boolean | Promise<boolean>;

export interface GatewayOptions {
  readonly host: string;
  readonly port: number;
  readonly corsOrigins: readonly string[];
  readonly log: Logger;
  readonly registry: Registry;
  /** Public services and the edge's own (reflection, health). */
  readonly services: readonly MountedService[];
  readonly readiness: ReadinessProbe;
  readonly doors?: readonly HttpDoor[];
  /**
   * Hot-path doors (the redirect door) tried first, synchronously, before the per-request
   * wrapper (request id, child logger, generic route metrics, CORS): they keep their own cheap
   * metrics and must only claim GET/HEAD requests that need none of it. Returning a promise
   * means the door has claimed the request (it answers when the promise settles).
   */
  readonly fastDoors?: readonly HttpDoor[];
  /** Largest request message per method (default: 16 KiB for all but rpc-limits.ts's built-in table). */
  readonly limits?: MessageLimits;
  /** Authenticates each call from its path and headers before its body is read. */
  readonly admission?: Admission;
  /** Connect interceptors (auth, rate limits) run on every routed call. */
  readonly interceptors?: readonly Interceptor[];
  /** Answer GET /metrics on this (public) port; default false (404). */
  readonly metricsOnPublicPort?: boolean;
  /** Per-call context values taken from the Node request (e.g. the client address). */
  readonly contextValues?: (req: Req) => ContextValues;
  /** Connection/stream budgets and deadlines of the port; unset ones take the transport defaults. */
  readonly transportLimits?: Partial<GatewayLimits>;
  /** Certificate and key files: the port speaks TLS only (ALPN h2 and http/1.1), reloaded on change. */
  readonly tls?: TlsFiles;
}

export interface Gateway {
  readonly port: number;
  readonly server: OnePortServer;
  close(graceMs: number): Promise<void>;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const { log, registry } = opts;
  const requests = new Counter({
    name: "gateway_http_requests_total",
    help: "Requests answered by the gateway, by route kind, protocol and status",
    labelNames: ["route", "protocol", "status"] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: "gateway_http_request_duration_seconds",
    help: "Time to answer a request (for streams: until the stream ends)",
    labelNames: ["route"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [registry],
  });

  const cors = createCors(opts.corsOrigins);
  const connect = createRpcHandler({
    services: opts.services,
    limits: opts.limits ?? createMessageLimits(opts.services.map((s) => s.desc), 16 * 1024),
    log,
    ...(opts.admission ? { admission: opts.admission } : {}),
    ...(opts.interceptors ? { interceptors: opts.interceptors } : {}),
    ...(opts.contextValues ? { contextValues: opts.contextValues } : {}),
    fallback(_req, res) {
      sendJson(res, 404, { code: "not_found", message: "no such route" });
    },
  });

  const routeOf = (req: Req): string => {
    const url = req.url ?? "/";
    if (url === HEALTHZ_PATH || url === READYZ_PATH || url === METRICS_PATH) return url.slice(1);
    const ct = String(req.headers["content-type"] ?? "");
    if (ct.startsWith("application/grpc-web")) return "grpc-web";
    if (ct.startsWith("application/grpc")) return "grpc";
    if (req.method === "POST" || ct.startsWith("application/connect")) return "connect";
    return "http";
  };

  const handle = async (req: Req, res: Res, reqLog: Logger): Promise<void> => {
    if (cors.handle(req, res)) return;
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" || req.method === "HEAD") {
      if (path === HEALTHZ_PATH) return sendJson(res, 200, { status: "ok" });
      // A browser opening the bare host gets a page; API clients keep the router's JSON 404.
      if (path === HOME_PATH && prefersHtml(req.headers.accept)) return sendHtml(res, 200, homePage(), req.method === "HEAD");
      if (path === READYZ_PATH) {
        const report = await opts.readiness();
        return sendJson(res, report.ready ? 200 : 503, report);
      }
      if (path === METRICS_PATH && opts.metricsOnPublicPort === true) {
        res.writeHead(200, { "content-type": registry.contentType });
        res.end(await registry.metrics());
        return;
      }
    }
    for (const door of opts.doors ?? []) {
      if (await door(req, res, reqLog)) return;
    }
    connect(req as http.IncomingMessage, res as http.ServerResponse);
  };

  const transportRefused = new Counter({
    name: "gateway_transport_refused_total",
    help: "Connections and HTTP/2 streams refused or closed by a transport limit, by reason",
    labelNames: ["what", "reason"] as const,
    registers: [registry],
  });
  const { http1HeadersTimeoutMs, http1RequestTimeoutMs, ...limits } = opts.transportLimits ?? {};

  const tls = opts.tls ? watchTlsContext(opts.tls, log.child({ component: "tls" }), { registry }) : undefined;
  const fastDoors = opts.fastDoors ?? [];
  const server = createOnePortServer((req, res) => {
    for (const door of fastDoors) {
      const claimed = door(req, res, log);
      if (claimed === true) return;
      if (claimed !== false) {
        void claimed.catch((e: unknown) => {
          log.error({ err: e }, "unhandled gateway error (fast door)");
          if (!res.headersSent) sendJson(res, 500, { code: "internal", message: "internal error" });
          else res.end();
        });
        return;
      }
    }
    const started = process.hrtime.bigint();
    // Internal headers (identity) are set by the gateway only: drop any a client sent.
    for (const name of Object.keys(req.headers)) {
      if (name.startsWith(INTERNAL_HEADER_PREFIX)) delete req.headers[name];
    }
    const given = req.headers["x-request-id"];
    const requestId = typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    if (typeof given !== "string") req.headers["x-request-id"] = requestId;
    const reqLog = log.child({ requestId });
    const route = routeOf(req);
    res.setHeader("x-request-id", requestId);
    res.once("finish", () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      requests.inc({ route, protocol: `http/${req.httpVersion}`, status: String(res.statusCode) });
      latency.observe({ route }, seconds);
      if (route !== "metrics" && route !== "healthz" && route !== "readyz") {
        reqLog.debug({ method: req.method, url: req.url, status: res.statusCode, ms: seconds * 1e3 }, "request");
      }
    });
    handle(req, res, reqLog).catch((e: unknown) => {
      reqLog.error({ err: e }, "unhandled gateway error");
      if (!res.headersSent) sendJson(res, 500, { code: "internal", message: `internal error (request id ${requestId})` });
      else res.end();
    });
  }, {
    ...(http1HeadersTimeoutMs !== undefined ? { headersTimeoutMs: http1HeadersTimeoutMs } : {}),
    ...(http1RequestTimeoutMs !== undefined ? { requestTimeoutMs: http1RequestTimeoutMs } : {}),
    limits,
    events: { onRefused: (what, reason) => transportRefused.inc({ what, reason }) },
    ...(tls ? { tls } : {}),
  });
  new Gauge({
    name: "gateway_transport_open",
    help: "Open TCP connections and HTTP/2 streams on the public port",
    labelNames: ["what"] as const,
    registers: [registry],
    collect() {
      const now = server.stats();
      this.set({ what: "connections" }, now.connections);
      this.set({ what: "streams" }, now.streams);
    },
  });
  const port = await server.listen(opts.port, opts.host).catch((e: unknown) => {
    tls?.close();
    throw e;
  });
  return {
    port,
    server,
    async close(graceMs) {
      tls?.close();
      await server.close(graceMs);
    },
  };
}

function sendJson(res: Res, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(text);
}
