import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { fromBinary } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { ClickBatchSchema, ClickEventSchema, type ClickEvent } from "../../gen/switchboard/events/v1/events_pb.js";
import {
  RedirectService,
  ResolveResponseSchema,
  WatchClicksResponseSchema,
  type WatchClicksResponse,
} from "../../gen/switchboard/redirect/v1/redirect_pb.js";
import { RedirectType } from "../../gen/switchboard/shortener/v1/shortener_pb.js";
import { notFound } from "../../platform/errors.js";
import type { BusMessage } from "../../platform/ports/event-bus.js";
import { requireCaller } from "../../platform/identity.js";
import { startClickConsumer } from "../analytics/consumer.js";
import { createClickStatsStore } from "../analytics/store.js";
import { createLinkStore } from "../links/store.js";
import type { ServiceModule } from "../module.js";
import { validateCode } from "./resolve.js";
import { LinkResolver } from "./resolver.js";
import { CLICK_BATCH_ALL, CLICKS_ALL, clickSubject, isClickBatchSubject } from "./subjects.js";

export const redirectModule: ServiceModule = {
  name: "redirect",
  desc: RedirectService,
  public: true,
  async create({ engine, log }) {
    const store = await createLinkStore(engine);
    const resolver = new LinkResolver(engine.cache, store, {
      onError: (what, err) => log.debug({ err, what }, "redirect cache error"),
    }).listen(engine.bus);
    const consumer = startClickConsumer({
      bus: engine.bus,
      store: createClickStatsStore(engine),
      log: log.child({ component: "analytics" }),
    });

    const impl: Partial<ServiceImpl<typeof RedirectService>> = {
      async resolve(req) {
        const code = validateCode(req.code);
        const v = await resolver.resolve(code);
        if (!v.found) throw notFound(`link "${code}"`);
        const expired = v.expiresAt <= Date.now();
        return create(ResolveResponseSchema, {
          code,
          longUrl: expired ? "" : v.longUrl,
          redirectType: v.redirectType === 301 ? RedirectType.PERMANENT : RedirectType.TEMPORARY,
          expired,
          ...(Number.isFinite(v.expiresAt) ? { expireTime: timestampFromMs(v.expiresAt) } : {}),
        });
      },

      async *watchClicks(req, ctx) {
        const caller = requireCaller(ctx);
        let subject = CLICKS_ALL;
        let only: string | undefined;
        let owns: (code: string) => Promise<boolean>;
        if (req.code !== "") {
          const code = validateCode(req.code);
          const link = await store.get(code);
          // Someone else's link is indistinguishable from an unknown one.
          if (!link || link.ownerId !== caller.userId) throw notFound(`link "${code}"`);
          subject = clickSubject(code);
          only = code;
          owns = async () => true;
        } else {
          const cache = new Map<string, boolean>();
          owns = async (code) => {
            let ok = cache.get(code);
            if (ok === undefined) {
              const v = await resolver.resolve(code).catch(() => undefined);
              ok = v?.found === true && v.ownerId === caller.userId;
              if (cache.size > 10_000) cache.clear();
              cache.set(code, ok);
            }
            return ok;
          };
        }
        // Gateways publish ClickBatch on switchboard.clicks.batch.<gateway> (inside CLICKS_ALL);
        // single ClickEvents on switchboard.clicks.<code> are still accepted.
        const queue: ClickEvent[] = [];
        let wake: (() => void) | undefined;
        const onMessage = (msg: BusMessage): void => {
          if (queue.length >= 1_000) return; // slow reader: drop live events rather than grow
          try {
            if (isClickBatchSubject(msg.subject)) {
              for (const c of fromBinary(ClickBatchSchema, msg.data).clicks) {
                if (only !== undefined && c.code !== only) continue;
                if (queue.length >= 1_000) break;
                queue.push(c);
              }
            } else {
              queue.push(fromBinary(ClickEventSchema, msg.data));
            }
          } catch {
            return;
          }
          wake?.();
        };
        const offs = [engine.bus.subscribe(subject, onMessage)];
        if (only !== undefined) offs.push(engine.bus.subscribe(CLICK_BATCH_ALL, onMessage));
        const off = () => {
          for (const o of offs) o();
        };
        const aborted = new Promise<void>((r) => ctx.signal.addEventListener("abort", () => r(), { once: true }));
        const seen = new Set<string>();
        try {
          while (!ctx.signal.aborted) {
            if (queue.length === 0) {
              await Promise.race([new Promise<void>((r) => (wake = r)), aborted]);
              wake = undefined;
              continue;
            }
            const click = queue.shift()!;
            // JetStream publish retries may fan out twice on core NATS: dedupe by event id.
            if (seen.has(click.eventId)) continue;
            seen.add(click.eventId);
            if (seen.size > 4_096) seen.delete(seen.values().next().value!);
            if (!(await owns(click.code))) continue;
            click.gatewayId = "";
            const out: WatchClicksResponse = create(WatchClicksResponseSchema, { click });
            yield out;
          }
        } finally {
          off();
        }
      },
    };
    return {
      impl,
      async close() {
        resolver.close();
        await consumer.close();
      },
    };
  },
};
