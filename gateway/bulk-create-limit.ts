/**
 * BulkCreateLinks at the edge, where the creation limiter lives: every item of the stream is
 * charged as one link creation (per account and per client address, CreateRateLimiter) as it
 * arrives. Allowed items go on to the shortener in one upstream stream; refused ones are
 * answered in place with RESOURCE_EXHAUSTED / RATE_LIMITED and never reach it. The upstream
 * answers its items in order, so its results are spliced with the refusals by position.
 *
 * The 10,000-item cap is applied here too, counting refused items: the edge stops reading at
 * the cap, lets the upstream finish what it got and answers `truncated`, so the answer always
 * reports every stored link and the refusal list stays bounded.
 *
 * Memory per stream: one record per refused item (its position and its item id, cut to 128
 * characters) for at most 10,000 items, plus CHARGE_AHEAD items whose charge is in flight.
 */
import { create } from "@bufbuild/protobuf";
import { Code, type HandlerContext } from "@connectrpc/connect";
import {
  BulkCreateLinksResponseSchema,
  BulkCreateLinksResultSchema,
  LinkErrorReason,
  type BulkCreateLinksRequest,
  type BulkCreateLinksResponse,
  type BulkCreateLinksResult,
} from "../gen/switchboard/shortener/v1/shortener_pb.js";
import type { DomainError } from "../platform/errors.js";
import { identityKey } from "../platform/identity.js";
import { MAX_BULK_ITEMS, MAX_ITEM_ID_ECHO } from "../services/shortener/service.js";
import { clientIpKey } from "./auth/interceptor.js";
import type { CreateRateLimiter } from "./rate-limit.js";

/** Items charged ahead of forwarding, so a shared cache's round trips overlap. */
const CHARGE_AHEAD = 32;

type BulkHandler = (requests: AsyncIterable<BulkCreateLinksRequest>, ctx: HandlerContext) => Promise<BulkCreateLinksResponse>;

interface Refusal {
  readonly position: number;
  readonly itemId: string;
  readonly error: DomainError;
}

/** Wraps the forwarding handler of BulkCreateLinks with per-item creation limits. */
export function limitBulkCreate(forward: BulkHandler, limiter: CreateRateLimiter, maxItems = MAX_BULK_ITEMS): BulkHandler {
  return async (requests, ctx) => {
    const charge = limiter.streamCharger(ctx.values.get(clientIpKey), ctx.values.get(identityKey));
    const refusals: Refusal[] = [];
    let read = 0;
    let capped = false;
    async function* allowed(): AsyncGenerator<BulkCreateLinksRequest> {
      const pending: { req: BulkCreateLinksRequest; position: number; verdict: Promise<DomainError | undefined> }[] = [];
      const settleFirst = async function* (): AsyncGenerator<BulkCreateLinksRequest> {
        const p = pending.shift()!;
        const refused = await p.verdict;
        if (refused) refusals.push({ position: p.position, itemId: p.req.itemId.slice(0, MAX_ITEM_ID_ECHO), error: refused });
        else yield p.req;
      };
      for await (const req of requests) {
        if (read >= maxItems) {
          capped = true;
          break;
        }
        const verdict = charge();
        // Observed in order later (or never, if the upstream fails first): no unhandled rejection meanwhile.
        verdict.catch(() => undefined);
        pending.push({ req, position: read++, verdict });
        if (pending.length >= CHARGE_AHEAD) yield* settleFirst();
      }
      while (pending.length > 0) yield* settleFirst();
    }
    const upstream = await forward(allowed(), ctx);
    return splice(upstream, refusals, read, capped);
  };
}

/** The upstream's in-order results with the refusals put back at their positions. */
export function splice(upstream: BulkCreateLinksResponse, refusals: readonly Refusal[], read: number, capped: boolean): BulkCreateLinksResponse {
  const results: BulkCreateLinksResult[] = [];
  let truncated = capped || upstream.truncated;
  let next = 0;
  let r = 0;
  for (let position = 0; position < read; position++) {
    const refusal = refusals[r];
    if (refusal && refusal.position === position) {
      r++;
      results.push(refusedResult(refusal));
      continue;
    }
    const up = upstream.results[next++];
    if (!up) {
      // The upstream stopped early: what follows was not processed, report up to here.
      truncated = true;
      break;
    }
    results.push(up);
  }
  const succeeded = results.filter((x) => x.result.case === "link").length;
  return create(BulkCreateLinksResponseSchema, { results, succeeded, failed: results.length - succeeded, truncated });
}

function refusedResult(r: Refusal): BulkCreateLinksResult {
  return create(BulkCreateLinksResultSchema, {
    itemId: r.itemId,
    result: { case: "error", value: { code: Code.ResourceExhausted, message: r.error.message, reason: LinkErrorReason.RATE_LIMITED } },
  });
}
