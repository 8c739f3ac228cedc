/** Resolving a code: the pure part of the redirect service (no I/O; the store is a port). */
import { invalidArgument, notFound } from "../../platform/errors.js";
import { CODE_CHARSET_TEXT, CODE_MAX_LENGTH, isCodeShaped } from "../links/code-grammar.js";
import type { Link, LinkStore } from "../links/ports.js";


export type Resolution =
  | { readonly kind: "active"; readonly link: Link }
  | { readonly kind: "expired"; readonly link: Link };

export function validateCode(code: string): string {
  if (!isCodeShaped(code)) {
    throw invalidArgument("code", `must be 1-${CODE_MAX_LENGTH} characters of ${CODE_CHARSET_TEXT}`);
  }
  return code;
}

export async function resolveCode(store: LinkStore, code: string, now: Date): Promise<Resolution> {
  const link = await store.get(validateCode(code));
  if (!link) throw notFound(`link "${code}"`);
  if (link.expiresAt !== undefined && link.expiresAt.getTime() <= now.getTime()) return { kind: "expired", link };
  return { kind: "active", link };
}
