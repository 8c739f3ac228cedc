/** Resolving a code: the pure part of the redirect service (no I/O; the store is a port). */
import { invalidArgument, notFound } from "../../platform/errors.js";
import type { Link, LinkStore } from "../links/ports.js";

/** Generated codes are 7 base62 chars; custom aliases 4-32 of [A-Za-z0-9_-]. */
const CODE = /^[A-Za-z0-9_-]{1,32}$/;

export type Resolution =
  | { readonly kind: "active"; readonly link: Link }
  | { readonly kind: "expired"; readonly link: Link };

export function validateCode(code: string): string {
  if (!CODE.test(code)) {
    throw invalidArgument("code", "must be 1-32 characters of A-Z, a-z, 0-9, '_' or '-'");
  }
  return code;
}

export async function resolveCode(store: LinkStore, code: string, now: Date): Promise<Resolution> {
  const link = await store.get(validateCode(code));
  if (!link) throw notFound(`link "${code}"`);
  if (link.expiresAt !== undefined && link.expiresAt.getTime() <= now.getTime()) return { kind: "expired", link };
  return { kind: "active", link };
}
