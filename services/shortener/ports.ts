/**
 * CodeSource port: where generated short codes come from. `next()` returns a fresh code of
 * exactly 7 base62 characters ([0-9A-Za-z]) that no other call anywhere (any process, any
 * time) returns: the token-range lease client + keyed permutation in production
 * (adapters/leased-code-source.ts). Errors: Unavailable when no range can be leased,
 * ResourceExhausted when the code space is used up, FailedPrecondition when misconfigured.
 */
export interface CodeSource {
  next(): Promise<string>;
  close?(): Promise<void>;
}
