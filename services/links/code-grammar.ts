/**
 * The one grammar of link codes and custom aliases. The shortener decides from it what may be
 * created, the gateway's redirect door what it may look up, the redirect service what a code in
 * a request may look like: one list, so an alias the shortener accepts is always a path the door
 * serves (two lists once let `about` be created and then never redirect).
 *
 * - A code is 1..32 characters of [A-Za-z0-9_-]: nothing that needs escaping in a path, no '.'
 *   or '/', so no traversal and no clash with file-like paths (favicon.ico, robots.txt,
 *   .well-known/...) or the Connect/gRPC routes (/package.Service/Method).
 * - Generated codes are exactly 7 base62 characters; custom aliases are 4..32 characters and
 *   never have that shape, so the two spaces cannot collide.
 * - Reserved words (compared case-insensitively) are never codes: every first path segment the
 *   gateway serves itself or keeps for later, and words that would mislead a reader of a link.
 */
export const CODE_MAX_LENGTH = 32;
export const ALIAS_MIN_LENGTH = 4;
export const ALIAS_MAX_LENGTH = CODE_MAX_LENGTH;
export const GENERATED_CODE_LENGTH = 7;
export const CODE_CHARSET_TEXT = "A-Z, a-z, 0-9, '_' or '-'";

const CODE_SHAPE = new RegExp(`^[A-Za-z0-9_-]{1,${CODE_MAX_LENGTH}}$`);
const CODE_CHARS = /^[A-Za-z0-9_-]+$/;
export const GENERATED_CODE = new RegExp(`^[A-Za-z0-9]{${GENERATED_CODE_LENGTH}}$`);

/** Lower-case; see the module comment. gateway/own-paths.test.ts checks the gateway's routes are here. */
export const RESERVED_WORDS: ReadonlySet<string> = new Set([
  // Served by the gateway today (gateway/own-paths.ts) or by its probes and tooling.
  "api", "apis", "healthz", "readyz", "livez", "health", "ready", "metrics", "grpc", "connect",
  "reflection", "switchboard",
  // Kept for pages and routes a public edge grows: a link must never shadow them.
  "about", "home", "index", "admin", "administrator", "static", "assets", "public", "favicon",
  "robots", "sitemap", "well-known", "login", "logout", "signin", "signup", "register", "auth",
  "oauth", "oauth2", "token", "tokens", "callback", "account", "accounts", "user", "users",
  "settings", "dashboard", "stats", "analytics", "links", "link", "shorten", "redirect", "docs",
  "help", "support", "status", "privacy", "terms", "contact", "debug", "internal", "root",
  "system", "www", "mail", "null", "undefined", "v1", "v2", "v3",
]);

export function isReservedWord(s: string): boolean {
  return RESERVED_WORDS.has(s.toLowerCase());
}

/** 1..32 characters of the code charset (says nothing about reserved words). */
export function isCodeShaped(s: string): boolean {
  return CODE_SHAPE.test(s);
}

/** A path segment that can name a link: code-shaped and not reserved. */
export function isLinkCode(s: string): boolean {
  return CODE_SHAPE.test(s) && !RESERVED_WORDS.has(s.toLowerCase());
}

export interface AliasProblem {
  /** LinkErrorReason names (the shortener's LinkReason). */
  readonly reason: "ALIAS_INVALID" | "ALIAS_RESERVED";
  readonly message: string;
}

/** Why `alias` cannot be a custom alias, or undefined when it can. */
export function aliasProblem(alias: string): AliasProblem | undefined {
  // Reserved first: "healthz" is also 7 letters, and "reserved" is the reason a user can act on.
  if (isReservedWord(alias)) return { reason: "ALIAS_RESERVED", message: `"${alias}" is a reserved word (a path the gateway serves itself)` };
  if (alias.length < ALIAS_MIN_LENGTH || alias.length > ALIAS_MAX_LENGTH) {
    return { reason: "ALIAS_INVALID", message: `must be ${ALIAS_MIN_LENGTH}-${ALIAS_MAX_LENGTH} characters (got ${alias.length})` };
  }
  if (!CODE_CHARS.test(alias)) return { reason: "ALIAS_INVALID", message: `may only contain ${CODE_CHARSET_TEXT}` };
  if (GENERATED_CODE.test(alias)) {
    return { reason: "ALIAS_INVALID", message: `${GENERATED_CODE_LENGTH} letters/digits is the shape of generated codes; use another length or add '-' or '_'` };
  }
  return undefined;
}
