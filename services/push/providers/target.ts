/**
 * User-supplied targets (webhook URLs, Web Push endpoints) are checked before any connection:
 * the check (allowlist, no internal addresses) is given by the caller, so tests can allow loopback.
 */
import type { SendOutcome } from "./provider.js";

/** Answers a refusal reason, or undefined when the target may be called. */
export type CheckTarget = (url: URL) => Promise<string | undefined>;

export async function refuseTarget(raw: string, checkTarget: CheckTarget | undefined): Promise<{ url: URL } | SendOutcome> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { kind: "failed", reason: "target is not a URL" };
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return { kind: "failed", reason: `target not allowed: scheme ${url.protocol}` };
  const refusal = checkTarget ? await checkTarget(url) : undefined;
  return refusal === undefined ? { url } : { kind: "failed", reason: `target not allowed: ${refusal}` };
}
