import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { RedirectService, ResolveResponseSchema } from "../../gen/switchboard/redirect/v1/redirect_pb.js";
import { RedirectType } from "../../gen/switchboard/shortener/v1/shortener_pb.js";
import { notFound } from "../../platform/errors.js";
import { requireCaller } from "../../platform/identity.js";
import { startClickConsumer } from "../analytics/consumer.js";
import { createClickStatsStore } from "../analytics/store.js";
import { createLinkStore } from "../links/store.js";
import type { ServiceModule } from "../module.js";
import { validateCode } from "./resolve.js";
import { clicksDurable } from "./subjects.js";
import { LinkResolver } from "./resolver.js";
import { ClickWatchHub, watchClicksHandler } from "./watch-clicks.js";

export const redirectModule: ServiceModule = {
  name: "redirect",
  desc: RedirectService,
  public: true,
  // Links in Cassandra (Redis is only a cache in front); click analytics and WatchClicks ride NATS.
  needs: ["cassandra", "nats"],
  async create({ config, engine, log, registry }) {
    const store = await createLinkStore(engine);
    const resolver = new LinkResolver(engine.cache, store, {
      onError: (what, err) => log.debug({ err, what }, "redirect cache error"),
    }).listen(engine.bus);
    const consumer = startClickConsumer({
      bus: engine.bus,
      durableName: clicksDurable(config.cassandra.keyspace),
      store: createClickStatsStore(engine),
      log: log.child({ component: "analytics" }),
      ...(registry ? { registry } : {}),
    });

    const hub = new ClickWatchHub(engine.bus, resolver, store, {
      maxPerCaller: config.streams.watchClicksPerCaller,
      onError: (what, err) => log.debug({ err, what }, "WatchClicks"),
    });
    const watchClicks = watchClicksHandler({ store, hub });

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
        yield* watchClicks(req, requireCaller(ctx).userId, ctx.signal);
      },
    };
    return {
      impl,
      async close() {
        hub.close();
        resolver.close();
        await consumer.close();
      },
    };
  },
};
