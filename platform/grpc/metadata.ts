/** Conversions between grpc-js Metadata and fetch-style Headers (Connect's header type). */
import { Metadata } from "@grpc/grpc-js";
import { decodeBinaryHeader, encodeBinaryHeader } from "@connectrpc/connect";

/** grpc Metadata -> Headers. Binary (`-bin`) values are base64-encoded, as gRPC sends them. */
export function metadataToHeaders(md: Metadata): Headers {
  const headers = new Headers();
  const all = md.toJSON();
  for (const key of Object.keys(all)) {
    for (const value of all[key] ?? []) {
      headers.append(key, typeof value === "string" ? value : encodeBinaryHeader(value));
    }
  }
  return headers;
}

/**
 * What `metadataToHeaders(md).get(key)` would return for a non-binary key, without building the
 * Headers: the values with leading/trailing HTTP whitespace removed, joined by ", "; null if absent.
 */
export function metadataValue(md: Metadata, key: string): string | null {
  const values = md.get(key);
  if (values.length === 0) return null;
  if (values.length === 1) {
    const v = values[0]!;
    return typeof v === "string" ? trimHttpWhitespace(v) : encodeBinaryHeader(v);
  }
  return values.map((v) => (typeof v === "string" ? trimHttpWhitespace(v) : encodeBinaryHeader(v))).join(", ");
}

const HTTP_WHITESPACE_EDGES = /^[\t\n\r ]+|[\t\n\r ]+$/g;

function trimHttpWhitespace(v: string): string {
  const first = v.charCodeAt(0);
  const last = v.charCodeAt(v.length - 1);
  const ws = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
  return v.length > 0 && (ws(first) || ws(last)) ? v.replace(HTTP_WHITESPACE_EDGES, "") : v;
}

/** Headers -> grpc Metadata. `-bin` values are base64-decoded; headers grpc owns are skipped. */
export function headersToMetadata(init: HeadersInit | undefined, into: Metadata = new Metadata()): Metadata {
  if (init === undefined) return into;
  const headers = init instanceof Headers ? init : new Headers(init);
  headers.forEach((value, key) => {
    if (RESERVED.has(key) || key.startsWith(":")) return;
    if (key.endsWith("-bin")) {
      for (const part of value.split(",")) into.add(key, Buffer.from(decodeBinaryHeader(part.trim())));
    } else {
      into.add(key, value);
    }
  });
  return into;
}

/** True when the Headers object holds at least one entry. */
export function hasEntries(headers: Headers): boolean {
  for (const _ of headers.keys()) return true;
  return false;
}

const RESERVED = new Set([
  "content-type",
  "content-length",
  "te",
  "grpc-timeout",
  "grpc-status",
  "grpc-message",
  "grpc-encoding",
  "grpc-accept-encoding",
  "user-agent",
  "host",
  "connection",
  "transfer-encoding",
]);
