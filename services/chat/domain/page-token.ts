/**
 * ListMyChannels page tokens: an offset into the caller's activity-ordered list, opaque and bound
 * to the caller (another user's token is refused). Activity while paging may move a channel
 * between pages (the proto says clients dedupe by channel_id).
 */
import { invalidArgument } from "../../../platform/errors.js";
import { decodePageToken, encodePageToken } from "../../links/page-token.js";

const STATE = /^o([0-9]{1,7})$/;

export function encodeChannelPageToken(userId: string, offset: number): string {
  return encodePageToken(userId, `o${offset}`);
}

export function decodeChannelPageToken(userId: string, token: string): number {
  if (!token) return 0;
  const m = STATE.exec(decodePageToken(userId, token));
  if (!m) throw invalidArgument("page_token", "malformed page token");
  return Number(m[1]);
}
