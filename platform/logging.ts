/**
 * Structured JSON logging (pino). One root logger per process, one child per RPC call.
 *
 * Secrets never reach the log: authorization/cookie headers (in any `headers`, `metadata`,
 * `requestHeader` or `req.headers` object) are redacted by path, and `safeHeaders()` strips
 * them before anyone logs a header set explicitly.
 */
import { randomUUID } from "node:crypto";
import { pino, type DestinationStream, type Logger } from "pino";

export type { Logger } from "pino";

export interface LoggerInit {
  /** pino level: fatal, error, warn, info, debug, trace or silent. */
  readonly level?: string;
  /** Process/component name, e.g. "shortener"; shows up as `name` on every line. */
  readonly name: string;
  /** Where lines go; stdout by default (tests pass a capturing stream). */
  readonly destination?: DestinationStream;
}

export interface CallLogFields {
  /** Fully-qualified service, e.g. "switchboard.shortener.v1.ShortenerService". */
  readonly service: string;
  /** Method name as declared in the proto, e.g. "Shorten". */
  readonly method: string;
  readonly requestId: string;
}

/** Header names whose values are credentials. Compared lower-case. */
export const SECRET_HEADERS: ReadonlySet<string> = new Set([
  "authorization",
  "proxy-authorization",
  "cookie",
  "set-cookie",
  "x-api-key",
  // The gateway's signed identity assertion (platform/identity.ts): a short-lived credential too.
  "x-switchboard-identity",
]);

const REDACT_CONTAINERS = ["headers", "metadata", "requestHeader", "responseHeader", "req.headers", "res.headers"];
const REDACT_PATHS: string[] = [
  ...[...SECRET_HEADERS].flatMap((h) => {
    const key = /^[a-z]+$/.test(h) ? `.${h}` : `["${h}"]`;
    return [...REDACT_CONTAINERS.map((c) => `${c}${key}`), ...REDACT_CONTAINERS.map((c) => `*.${c}${key}`)];
  }),
];

export function createLogger(init: LoggerInit): Logger {
  const options = {
    name: init.name,
    level: init.level ?? "info",
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    formatters: { level: (label: string) => ({ level: label }) },
    serializers: { err: pino.stdSerializers.err },
  };
  return init.destination ? pino(options, init.destination) : pino(options);
}

/** The per-request child logger: every line carries service, method and requestId. */
export function childForCall(log: Logger, fields: CallLogFields): Logger {
  return log.child({ service: fields.service, method: fields.method, requestId: fields.requestId });
}

/** Header carrying the request id between hops (set by the gateway, propagated by clients). */
export const REQUEST_ID_HEADER = "x-request-id";

/** The caller's request id when it is sane (<= 128 visible ASCII chars), else a fresh UUID. */
export function requestIdFrom(headers: Headers | undefined): string {
  return requestIdFromValue(headers?.get(REQUEST_ID_HEADER));
}

/** `requestIdFrom` for a header value already read (null/undefined when absent). */
export function requestIdFromValue(v: string | null | undefined): string {
  return v !== null && v !== undefined && REQUEST_ID_RE.test(v) ? v : randomUUID();
}

const REQUEST_ID_RE = /^[\x21-\x7e]{1,128}$/;

/** A plain object of the headers fit for a log line: secret values replaced by "[redacted]". */
export function safeHeaders(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((value, key) => {
    out[key] = SECRET_HEADERS.has(key.toLowerCase()) ? "[redacted]" : value;
  });
  return out;
}
