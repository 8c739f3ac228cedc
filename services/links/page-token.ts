/** Opaque listing page tokens: base64url JSON bound to the owner, so a token only works for its owner. */
import { createHash } from "node:crypto";
import { invalidArgument } from "../../platform/errors.js";

const ownerTag = (ownerId: string): string => createHash("sha256").update(ownerId).digest("base64url").slice(0, 12);

export function encodePageToken(ownerId: string, state: string): string {
  return Buffer.from(JSON.stringify({ o: ownerTag(ownerId), s: state })).toString("base64url");
}

/** The state inside a token; InvalidArgument (page_token) when malformed or another owner's. */
export function decodePageToken(ownerId: string, token: string): string {
  let parsed: unknown;
  try {
    if (token.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(token)) throw new Error("charset");
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw invalidArgument("page_token", "malformed page token");
  }
  const p = parsed as { o?: unknown; s?: unknown };
  if (typeof p !== "object" || p === null || typeof p.s !== "string" || p.o !== ownerTag(ownerId)) {
    throw invalidArgument("page_token", "page token does not belong to this listing");
  }
  return p.s;
}
