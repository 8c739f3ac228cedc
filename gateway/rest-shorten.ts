/**
 * REST door `POST /api/v1/shorten` (the URL-shortener seed's API), forwarded to the
 * shortener's CreateLink over internal gRPC with the caller's identity.
 *
 * Request (application/json, at most 16 KB):
 *   { "long_url": "https://...",            required string
 *     "custom_alias": "my-alias",          optional string; "" or null = generated code
 *     "expiry_date": "2030-12-31T23:59:59Z", optional RFC 3339 / ISO 8601 date-time with offset; null = never
 *     "redirect_type": 301 | 302,          optional (default 302)
 *     "idempotency_key": "...",            optional (safe retries, see CreateLinkRequest)
 *     "user_id": "..." }                   IGNORED: the owner is the authenticated caller
 * Unknown fields are ignored (forward compatible, like the seed's user_id).
 *
 * Response 201 (200 when an idempotency_key replays an earlier create):
 *   { "short_url", "code", "long_url", "expiry_date" (or null), "created_at", "redirect_type", "custom" }
 *
 * Errors: `{ "error": { "code": "invalid_argument", "message": "...", "field": "long_url", "reason": "URL_SCHEME_NOT_ALLOWED" } }`
 * (`field` when the error is about one request field, `reason` when the shortener gave one)
 * with the status from httpStatusFor (400 401 403 404 409 412 429 503 ...), plus 405 (method),
 * 413 (body over 16 KB; reading stops there), 415 (not JSON). 401 carries WWW-Authenticate,
 * 429 and 503 carry Retry-After. Never a stack trace.
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type http from "node:http";
import type http2 from "node:http2";
import type { Logger } from "pino";
import {
  CreateLinkRequestSchema,
  LinkErrorDetailSchema,
  LinkErrorReason,
  RedirectType,
  ShortenerService,
} from "../gen/switchboard/shortener/v1/shortener_pb.js";
import type { GrpcClient } from "../platform/grpc/client.js";
import { httpStatusFor, retryAfterMsOf, toConnectError } from "../platform/grpc/status.js";
import type { Identity } from "../platform/identity.js";
import type { Authenticator } from "./auth/authenticator.js";
import { AuthError, MISSING_CREDENTIALS } from "./auth/errors.js";
import { connected, edgeError } from "./forward.js";
import type { HttpDoor } from "./gateway.js";
import { clientIpOf, type CreateRateLimiter } from "./rate-limit.js";
import { SHORTEN_PATH } from "./own-paths.js";
import { shortUrlOf } from "./short-urls.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

export { SHORTEN_PATH };
export const MAX_BODY_BYTES = 16 * 1024;
const UPSTREAM_TIMEOUT_MS = 10_000;
const CREATE_LINK_PATH = `/${ShortenerService.typeName}/${ShortenerService.method.createLink.name}`;

export interface RestShortenOptions {
  readonly shortener: Pick<GrpcClient<typeof ShortenerService>, "createLink">;
  readonly authenticator: Authenticator;
  /** Signs the caller's identity for the shortener (GatewayAuth.identityHeaders). */
  readonly identityHeaders: (identity: Identity, methodPath: string) => Headers;
  readonly limiter?: CreateRateLimiter;
  readonly trustProxyHops: number;
  /** The gateway's public base URL: short_url is always built on it (gateway/short-urls.ts). */
  readonly publicBaseUrl: string;
}

/** An error answered as JSON. */
class RestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    readonly headers: Record<string, string> = {},
    /** Machine-readable reason from the shortener (LinkErrorReason name), when there is one. */
    readonly reason?: string,
  ) {
    super(message);
  }
}

const bad = (message: string, field?: string) => new RestError(400, "invalid_argument", message, field);

export function restShortenDoor(opts: RestShortenOptions): HttpDoor {
  return async (req, res, log) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== SHORTEN_PATH && path !== `${SHORTEN_PATH}/`) return false;
    try {
      await handle(opts, req, res, log);
    } catch (e) {
      const err = e instanceof RestError ? e : fromError(e, log);
      sendError(req, res, err);
    }
    return true;
  };
}

async function handle(opts: RestShortenOptions, req: Req, res: Res, log: Logger): Promise<void> {
  if (req.method !== "POST") {
    throw new RestError(405, "method_not_allowed", `${req.method ?? "this method"} is not allowed here: use POST with a JSON body`, undefined, {
      allow: "POST",
    });
  }
  const identity = await authenticate(opts.authenticator, req);
  await opts.limiter?.check(clientIpOf(req, opts.trustProxyHops), identity);
  checkContentType(req);
  const body = parseBody(await readBody(req));
  const input = validate(body);

  const headers = opts.identityHeaders(identity, CREATE_LINK_PATH);
  for (const name of ["x-request-id", "user-agent"] as const) {
    const v = req.headers[name];
    if (typeof v === "string") headers.set(name, v);
  }
  await connected(opts.shortener);
  const out = await opts.shortener.createLink(
    create(CreateLinkRequestSchema, {
      longUrl: input.longUrl,
      customAlias: input.customAlias,
      redirectType: input.redirectType,
      idempotencyKey: input.idempotencyKey,
      ...(input.expiry ? { expireTime: timestampFromDate(input.expiry) } : {}),
    }),
    { headers, timeoutMs: UPSTREAM_TIMEOUT_MS },
  );
  const link = out.link;
  if (!link) throw new Error("CreateLink answered without a link");
  log.debug({ code: link.code }, "shortened over REST");
  const payload = {
    short_url: shortUrlOf(opts.publicBaseUrl, link.code),
    code: link.code,
    long_url: link.longUrl,
    expiry_date: link.expireTime ? timestampDate(link.expireTime).toISOString() : null,
    created_at: link.createTime ? timestampDate(link.createTime).toISOString() : new Date().toISOString(),
    redirect_type: link.redirectType === RedirectType.PERMANENT ? 301 : 302,
    custom: link.custom,
  };
  sendJson(res, out.idempotentReplay ? 200 : 201, payload);
}

async function authenticate(authenticator: Authenticator, req: Req): Promise<Identity> {
  const identity = await authenticator.authenticate((name) => {
    const v = req.headers[name];
    return Array.isArray(v) ? v.join(", ") : v;
  });
  if (!identity) throw new AuthError("missing", MISSING_CREDENTIALS);
  return identity;
}

function checkContentType(req: Req): void {
  const ct = String(req.headers["content-type"] ?? "").toLowerCase();
  const [type, ...params] = ct.split(";").map((s) => s.trim());
  if (type !== "application/json") {
    throw new RestError(415, "unsupported_media_type", `content-type must be application/json (got "${type || "none"}")`);
  }
  const charset = params.find((p) => p.startsWith("charset="))?.slice(8).replace(/"/g, "");
  if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") {
    throw new RestError(415, "unsupported_media_type", `charset must be utf-8 (got "${charset}")`);
  }
}

const tooLarge = () => new RestError(413, "payload_too_large", `request body is larger than ${MAX_BODY_BYTES} bytes`, undefined, { connection: "close" });

/** Reads at most MAX_BODY_BYTES; stops reading as soon as the body is known to be larger. */
function readBody(req: Req): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > MAX_BODY_BYTES) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        cleanup();
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new RestError(400, "invalid_argument", `could not read the request body: ${err.message}`));
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
  });
}

function parseBody(raw: Buffer): Record<string, unknown> {
  if (raw.length === 0) throw bad("request body is empty: send a JSON object with long_url");
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    throw bad("request body is not valid UTF-8");
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw bad(`malformed JSON: ${e instanceof Error ? e.message : "parse error"}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad("request body must be a JSON object");
  return v as Record<string, unknown>;
}

interface ShortenInput {
  readonly longUrl: string;
  readonly customAlias: string;
  readonly expiry?: Date;
  readonly redirectType: RedirectType;
  readonly idempotencyKey: string;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

function optionalString(body: Record<string, unknown>, field: string): string {
  const v = body[field];
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw bad(`${field} must be a string (got ${jsonType(v)})`, field);
  return v;
}

function jsonType(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

export function validate(body: Record<string, unknown>): ShortenInput {
  const longUrl = body["long_url"];
  if (longUrl === undefined || longUrl === null || longUrl === "") throw bad("long_url is required", "long_url");
  if (typeof longUrl !== "string") throw bad(`long_url must be a string (got ${jsonType(longUrl)})`, "long_url");
  const customAlias = optionalString(body, "custom_alias");
  const idempotencyKey = optionalString(body, "idempotency_key");
  const expiryText = optionalString(body, "expiry_date");
  let expiry: Date | undefined;
  if (expiryText !== "") {
    const m = RFC3339.exec(expiryText);
    const d = new Date(expiryText);
    if (!m || Number.isNaN(d.getTime()) || Number(m[2]) > 12 || Number(m[3]) > 31 || Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6]) > 60) {
      throw bad(`expiry_date must be an ISO 8601 date-time with a UTC offset, e.g. 2030-12-31T23:59:59Z (got "${expiryText.slice(0, 64)}")`, "expiry_date");
    }
    expiry = d;
  }
  const rt = body["redirect_type"];
  let redirectType = RedirectType.UNSPECIFIED;
  if (rt !== undefined && rt !== null) {
    if (rt === 301) redirectType = RedirectType.PERMANENT;
    else if (rt === 302) redirectType = RedirectType.TEMPORARY;
    else throw bad("redirect_type must be 301 or 302", "redirect_type");
  }
  return { longUrl, customAlias, redirectType, idempotencyKey, ...(expiry ? { expiry } : {}) };
}

/** REST names of request fields the shortener names in proto terms. */
const FIELD_NAMES: Readonly<Record<string, string>> = { expire_time: "expiry_date" };

function fromError(e: unknown, log: Logger): RestError {
  const err = (e instanceof ConnectError ? edgeError(e, "shortener") : toConnectError(e, log)) as ConnectError;
  const status = httpStatusFor(err.code);
  const headers: Record<string, string> = {};
  const retry = retryAfterMsOf(err);
  if (retry !== undefined && (err.code === Code.ResourceExhausted || err.code === Code.Unavailable)) {
    headers["retry-after"] = String(Math.max(1, Math.ceil(retry / 1000)));
  }
  if (err.code === Code.Unauthenticated) headers["www-authenticate"] = 'Bearer realm="switchboard"';
  const message = err.rawMessage;
  const m = /^([a-z_]+(?:\.[a-z_]+)*): /.exec(message);
  let detail: { reason: LinkErrorReason; field: string } | undefined;
  try {
    detail = err.findDetails(LinkErrorDetailSchema)[0];
  } catch {
    detail = undefined;
  }
  const rawField = detail?.field || m?.[1];
  const field = rawField ? (FIELD_NAMES[rawField] ?? rawField) : undefined;
  const reason = detail && detail.reason !== LinkErrorReason.UNSPECIFIED ? LinkErrorReason[detail.reason] : undefined;
  return new RestError(status, codeName(err.code), message, field, headers, reason);
}

function codeName(code: Code): string {
  return (Code[code] ?? "unknown").replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

function sendError(req: Req, res: Res, err: RestError): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const body = {
    error: { code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}), ...(err.reason ? { reason: err.reason } : {}) },
  };
  const headers = { ...err.headers };
  // Connection headers are illegal on HTTP/2.
  if (req.httpVersionMajor >= 2) delete headers["connection"];
  sendJson(res, err.status, body, headers);
  if (err.status === 413 && req.httpVersionMajor < 2) {
    // Unread body left on the connection: close it once the answer is out.
    res.once("finish", () => (req as http.IncomingMessage).socket?.destroySoon?.());
  }
}

function sendJson(res: Res, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  (res as http.ServerResponse).writeHead(status, {
    "content-type": "application/json",
    "cache-control": "no-store",
    "content-length": String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}
