import { cacheConformance } from "../../ports/cache.conformance.js";
import { ManualClock } from "./clock.js";
import { MemoryCache } from "./memory-cache.js";

cacheConformance(async () => {
  const clock = new ManualClock();
  return {
    cache: new MemoryCache(clock),
    cleanup: async () => {},
    advance: async (ms) => clock.advance(ms),
  };
});
