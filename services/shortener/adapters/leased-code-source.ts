/**
 * CodeSource on the token-range leasing client (Leaf-style double-buffered ranges of the
 * "links" counter) and the keyed Feistel permutation (encodeCode) onto 7 base62 characters. A
 * lease round trip is rare; every other code is served in-process. In production the ranges
 * come from the token-range service over gRPC (grpcRangeSource): ZooKeeper stays behind it.
 * While token-range is down the buffered values are served, then `next()` fails with
 * Unavailable naming the token-range service; background retries recover by themselves.
 *
 * The permutation key comes from `key()` on first use (SWITCHBOARD_CODE_KEY, see
 * services/tokenrange/code-key.ts); when it throws (e.g. not set on the cluster engine) every
 * `next()` fails with FailedPrecondition naming the problem, instead of stopping the process.
 */
import { DomainError } from "../../../platform/errors.js";
import type { EngineLog } from "../../../platform/engines/log.js";
import { createLeaseClient, encodeCode, type LeaseClientOptions, type RangeSource } from "../../tokenrange/index.js";
import type { CodeSource } from "../ports.js";

export const LINKS_NAMESPACE = "links";

export interface LeasedCodeSourceOptions {
  /** Where ranges of the "links" namespace come from (closed with this source). */
  readonly source: RangeSource;
  readonly key: () => string;
  readonly log?: EngineLog;
  readonly lease?: Partial<Omit<LeaseClientOptions, "namespace" | "source">>;
}

export function leasedCodeSource(options: LeasedCodeSourceOptions): CodeSource {
  let key: string | undefined;
  let keyError: Error | undefined;
  const loadKey = (): string => {
    if (key !== undefined) return key;
    if (keyError === undefined) {
      try {
        key = options.key();
        return key;
      } catch (e) {
        keyError = e as Error;
        options.log?.error({ err: e }, "short-code key unavailable: generated codes cannot be issued");
      }
    }
    throw new DomainError("FailedPrecondition", `generated codes are unavailable: ${keyError!.message}`);
  };
  const client = createLeaseClient({
    ...options.lease,
    namespace: LINKS_NAMESPACE,
    source: options.source,
    ...(options.log ? { log: options.log } : {}),
  });
  return {
    async next() {
      const k = loadKey();
      const v = client.next() ?? (await client.nextAsync().catch((e: unknown) => {
        if (!(e instanceof DomainError) || e.kind !== "Unavailable") throw e;
        // The detail (addresses, transport text) goes to the log; the caller learns which service is down.
        options.log?.warn({ err: e }, "no short codes left in the buffer and token-range is unreachable");
        throw new DomainError(
          "Unavailable",
          "generated codes are unavailable: the token-range service cannot be reached and the buffered codes are used up; retry shortly (custom aliases still work)",
          { retryAfterMs: 1_000 },
          { cause: e },
        );
      }));
      return encodeCode(v, k);
    },
    async close() {
      await client.close(); // closes the source too
    },
  };
}
