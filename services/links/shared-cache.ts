/**
 * The shared (Redis) cache entry of a link, as the writers of links and the readers of the
 * redirect chain agree on it: one key per code, and a fence that a change leaves behind.
 *
 * Why a fence and not a delete: a reader that read the database just before a change and
 * writes the cache just after the change's delete would put the old target back for the whole
 * Redis TTL, and nothing would remove it if the LinkChanged event is lost. The fence is a
 * tombstone value written unconditionally by the changer; readers fill the cache only with
 * setIfAbsent, so the fence blocks every late fill until it expires. It outlives any read a
 * reader still writes back (readers drop fills slower than MAX_FILL_AGE_MS).
 */
import { DomainError } from "../../platform/errors.js";
import type { Cache } from "../../platform/ports/cache.js";

export const LINK_KEY_PREFIX = "sb:link:";
/** A value that never decodes as a link: "changed recently, ask the database, do not fill". */
export const LINK_FENCE = "~";
export const LINK_FENCE_TTL_MS = 10_000;
/** A reader whose database read is older than this does not write it to the shared cache. */
export const MAX_FILL_AGE_MS = LINK_FENCE_TTL_MS / 2;

export const linkKey = (code: string, prefix = LINK_KEY_PREFIX): string => prefix + code;

/** Port of the shortener: fences a code's shared cache entry; throws Unavailable when it cannot. */
export interface LinkCacheFence {
  fence(code: string): Promise<void>;
}

/** The fence on the engine's Cache, retried briefly: a change is acknowledged only once it holds. */
export function cacheFence(cache: Cache, options: { attempts?: number; retryMs?: number; prefix?: string } = {}): LinkCacheFence {
  const attempts = options.attempts ?? 3;
  const retryMs = options.retryMs ?? 100;
  return {
    async fence(code) {
      let last: unknown;
      for (let i = 0; i < attempts; i++) {
        try {
          await cache.set(linkKey(code, options.prefix), LINK_FENCE, LINK_FENCE_TTL_MS);
          return;
        } catch (e) {
          last = e;
          if (i + 1 < attempts) await new Promise((r) => setTimeout(r, retryMs * (i + 1)));
        }
      }
      const why = last instanceof Error ? last.message : String(last);
      throw new DomainError("Unavailable", `the shared link cache is unreachable (${why}): nothing was changed; retry shortly`, { retryAfterMs: 1_000 }, { cause: last });
    },
  };
}
