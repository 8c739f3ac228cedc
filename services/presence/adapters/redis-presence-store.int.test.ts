// The PresenceStore conformance suite on the run's real Redis (testkit), one key prefix per file.
import { randomUUID } from "node:crypto";
import { afterAll } from "vitest";
import { RedisCache } from "../../../platform/engines/cluster/redis-cache.js";
import { infra } from "../../../testkit/keyspace.js";
import { waitFor } from "../../../testkit/processes.js";
import { presenceStoreConformance } from "../presence-store.conformance.js";
import { RedisPresenceStore } from "./redis-presence-store.js";

let cache: RedisCache | undefined;
const prefix = `t:${randomUUID().slice(0, 8)}:`;

presenceStoreConformance("redis", async () => {
  if (!cache) {
    cache = new RedisCache({ url: infra().redis.url });
    const c = cache;
    await waitFor("redis", async () => (c.status().ok ? true : undefined), 10_000);
  }
  return new RedisPresenceStore(cache.client, { keyPrefix: prefix });
});

afterAll(async () => {
  await cache?.close();
});
