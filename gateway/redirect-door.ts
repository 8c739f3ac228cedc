/**
 * `GET|HEAD /{code}` at the gateway: plain node:http code before the Connect router.
 *
 * - 301 or 302 (per link) with Location; 404 unknown; 410 expired; 503 when the database is
 *   unreachable and the code is not cached. The target's scheme is re-checked before answering:
 *   a stored target that is not http(s) is never redirected to (404, logged).
 * - Cache-Control: 302 -> "private, no-store"; 301 -> "public, max-age=300"; 404/410/503 ->
 *   "no-store". 404/410/503 are a small HTML page when Accept prefers HTML (a browser), plain
 *   text otherwise (html-pages.ts); both say Vary: Accept.
 * - Near-cache hit: answered synchronously (no await, no promise) from the resolver's LRU;
 *   miss: Redis, then the LinkStore directly (no gRPC hop).
 * - Every redirect (301/302, GET or HEAD) records a click in the ClickEmitter queue after the
 *   response is written, stamped with the link it redirected to (the resolved value itself:
 *   owner and creation time, no further lookup).
 * - Metrics: `gateway_redirect_responses_total{status,cache="hit"|"miss"}` (plain tallies, copied
 *   into prom-client at scrape time);
 *   the gateway runs this door as a fast door, before its generic per-request wrapper.
 * Paths that are not link codes (services/links/code-grammar.ts: not code-shaped, or a reserved
 *   word) are not this door's (returns false).
 */
import type http from "node:http";
import type http2 from "node:http2";
import os from "node:os";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import type { Engine } from "../platform/engine.js";
import { countryCode } from "../services/analytics/classify.js";
import { isLinkCode } from "../services/links/code-grammar.js";
import { createLinkStore } from "../services/links/store.js";
import { LinkResolver, type CachedLink, type Lookup, type ResolverOptions } from "../services/redirect/resolver.js";
import { ClickEmitter } from "./clicks.js";
import type { HttpDoor } from "./gateway.js";
import { gonePage, notFoundPage, prefersHtml, sendHtml, unavailablePage } from "./html-pages.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

const SAFE_URL = /^https?:\/\/[^\s\x00-\x1f\x7f]+$/i;

export function isSafeTarget(url: string): boolean {
  return SAFE_URL.test(url);
}

const NOT_FOUND_BODY = "Not Found\n";
const GONE_BODY = "Gone\n";
const UNAVAILABLE_BODY = "Service Unavailable\n";

export interface RedirectDoorOptions {
  readonly resolver: LinkResolver;
  readonly clicks?: ClickEmitter;
  readonly now?: () => number;
  /** Registers `gateway_redirect_responses_total{status,cache}` here. */
  readonly registry?: Registry;
  /** Lower-case name of the header a trusted proxy puts the client's country in (clicks' `country`). */
  readonly countryHeader?: string;
}

/** A plain per-process tally: the hot path only increments a number. */
class Tally {
  n = 0;
  inc(): void {
    this.n++;
  }
}

const STATUSES = [301, 302, 404, 410, 503] as const;

/**
 * Response counters by status and near-cache outcome: plain numbers on the hot path (no label
 * hashing, no prom-client call per request), copied into the prom-client counter when the
 * registry is scraped (`collect`).
 */
function doorCounters(registry: Registry | undefined) {
  const tallies = () => ({ 301: new Tally(), 302: new Tally(), 404: new Tally(), 410: new Tally(), 503: new Tally() });
  const counters = { hit: tallies(), miss: tallies() };
  if (registry) {
    new Counter({
      name: "gateway_redirect_responses_total",
      help: "Answers of the GET/HEAD /{code} redirect door, by status and near-cache outcome",
      labelNames: ["status", "cache"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const cache of ["hit", "miss"] as const) {
          for (const status of STATUSES) this.inc({ status: String(status), cache }, counters[cache][status].n);
        }
      },
    });
  }
  return counters;
}
type StatusCounters = ReturnType<typeof doorCounters>["hit"];

export function createRedirectDoor(opts: RedirectDoorOptions): HttpDoor {
  const { resolver, clicks } = opts;
  const now = opts.now ?? Date.now;
  const counters = doorCounters(opts.registry);

  const answer = (req: Req, res: Res, log: Logger, head: boolean, v: Lookup, m: StatusCounters): void => {
    if (!v.found) {
      m[404].inc();
      return refusal(req, res, 404, v.code, head);
    }
    if (v.expiresAt <= now()) {
      m[410].inc();
      return refusal(req, res, 410, v.code, head);
    }
    if (!isSafeTarget(v.longUrl)) {
      m[404].inc();
      log.warn({ code: v.code }, "refusing to redirect: stored target is not an http(s) URL");
      return refusal(req, res, 404, v.code, head);
    }
    const permanent = v.redirectType === 301;
    m[permanent ? 301 : 302].inc();
    res.writeHead(permanent ? 301 : 302, {
      location: v.longUrl,
      "cache-control": permanent ? "public, max-age=300" : "private, no-store",
      "content-length": "0",
    });
    res.end();
    if (clicks) clickFrom(clicks, req, v, head, opts.countryHeader);
  };

  return (req, res, log) => {
    const method = req.method;
    const head = method === "HEAD";
    if (!head && method !== "GET") return false;
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    if (path.charCodeAt(0) !== 0x2f) return false; // "/": origin-form only
    const code = path.slice(1);
    if (!isLinkCode(code)) return false;
    const hit = resolver.peek(code);
    if (hit !== undefined) {
      answer(req, res, log, head, hit, counters.hit);
      return true;
    }
    return resolver.resolve(code).then(
      (v) => {
        answer(req, res, log, head, v, counters.miss);
        return true;
      },
      (err: unknown) => {
        log.warn({ err, code }, "redirect lookup failed");
        counters.miss[503].inc();
        refusal(req, res, 503, code, head);
        return true;
      },
    );
  };
}

/**
 * Records the click with its Referer and User-Agent read from rawHeaders: Node builds
 * `req.headers` (an object of every header, names lower-cased) lazily on first access, and the
 * door needs only these two.
 */
function clickFrom(clicks: ClickEmitter, req: Req, link: CachedLink, head: boolean, countryHeader: string | undefined): void {
  const raw = req.rawHeaders;
  let referer: string | undefined;
  let ua: string | undefined;
  let country: string | undefined;
  const countryLength = countryHeader?.length ?? -1;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 7 && referer === undefined && (name === "Referer" || name === "referer" || name.toLowerCase() === "referer")) {
      referer = raw[i + 1];
    } else if (name.length === 10 && ua === undefined && (name === "User-Agent" || name === "user-agent" || name.toLowerCase() === "user-agent")) {
      ua = raw[i + 1];
    } else if (name.length === countryLength && country === undefined && name.toLowerCase() === countryHeader) {
      country = raw[i + 1];
    }
  }
  clicks.record(link.code, referer, ua, head, link, countryCode(country));
}

/** 404, 410 or 503: a small HTML page for browsers, plain text for everything else. */
function refusal(req: Req, res: Res, status: 404 | 410 | 503, code: string, head: boolean): void {
  if (prefersHtml(req.headers.accept)) {
    const html = status === 404 ? notFoundPage(code) : status === 410 ? gonePage(code) : unavailablePage();
    return sendHtml(res, status, html, head);
  }
  plain(res, status, status === 404 ? NOT_FOUND_BODY : status === 410 ? GONE_BODY : UNAVAILABLE_BODY, head);
}

function plain(res: Res, status: number, body: string, head: boolean): void {
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "cache-control": "no-store",
    vary: "accept",
    "content-length": String(Buffer.byteLength(body)),
  });
  const r = res as http.ServerResponse;
  if (head) r.end();
  else r.end(body);
}

export interface GatewayRedirects {
  readonly door: HttpDoor;
  readonly resolver: LinkResolver;
  readonly clicks: ClickEmitter;
  close(): Promise<void>;
}

/** The door as the gateway runs it: its own near-cache, the engine's Redis + LinkStore, clicks to NATS. */
export async function createGatewayRedirects(
  engine: Engine,
  log: Logger,
  options: { registry?: Registry; gatewayId?: string; resolver?: ResolverOptions; countryHeader?: string } = {},
): Promise<GatewayRedirects> {
  const store = await createLinkStore(engine);
  const resolver = new LinkResolver(engine.cache, store, {
    ...options.resolver,
    onError: (what, err) => log.debug({ err, what }, "redirect cache error"),
  }).listen(engine.bus);
  const clicks = new ClickEmitter({
    bus: engine.bus,
    gatewayId: options.gatewayId ?? `${os.hostname()}-${process.pid}`,
    log,
    ...(options.registry ? { registry: options.registry } : {}),
  });
  return {
    door: createRedirectDoor({
      resolver,
      clicks,
      ...(options.registry ? { registry: options.registry } : {}),
      ...(options.countryHeader ? { countryHeader: options.countryHeader } : {}),
    }),
    resolver,
    clicks,
    async close() {
      resolver.close();
      await clicks.close();
    },
  };
}
