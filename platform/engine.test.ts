import { expect, it } from "vitest";
import { loadConfig } from "./config.js";
import { openEngine } from "./engine.js";
import { silentLog } from "./engines/log.js";

it("memory engine: ready, working adapters, no cql, close is idempotent", async () => {
  const engine = await openEngine(loadConfig({}), silentLog);
  expect(engine.kind).toBe("memory");
  expect(engine.cql).toBeUndefined();
  expect((await engine.readiness()).ready).toBe(true);
  await engine.cache.set("k", "v", 1000);
  expect(await engine.cache.get("k")).toBe("v");
  expect(engine.coordinator.sessionState).toBe("connected");
  await engine.close();
  await engine.close();
  expect((await engine.readiness()).ready).toBe(false);
});
