/**
 * What a user id is, defined once for the whole mesh: 1-256 characters, each printable ASCII
 * (0x21-0x7E). Why this strict:
 * - the id is the owner key of every link and crosses process boundaries; whitespace at the ends
 *   is trimmed by HTTP/2 and gRPC header handling, so "bob " would arrive as "bob" and act as bob;
 * - CR, LF, NUL and other control characters are illegal in header values (a 500 on every call);
 * - non-ASCII has several byte spellings of one visible string (NFC/NFD, look-alikes), so two
 *   different ids could look the same to a person or compare equal after someone normalises them.
 * Issuers' real subjects (UUIDs, numeric ids, e-mail addresses, "auth0|abc123") fit easily; an id
 * that does not is refused at the edge, never normalised into another one.
 */
export const MAX_USER_ID_CHARS = 256;

const USER_ID = /^[\x21-\x7e]{1,256}$/;

/** Said in every refusal, so the caller knows what would be accepted. */
export const USER_ID_RULE = `1-${MAX_USER_ID_CHARS} printable ASCII characters (no spaces, control characters or non-ASCII)`;

export function isValidUserId(value: unknown): value is string {
  return typeof value === "string" && USER_ID.test(value);
}
