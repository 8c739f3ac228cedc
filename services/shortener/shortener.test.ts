import { openMemoryEngine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import { shortenerSuite } from "./shortener.suite.js";

shortenerSuite("memory", async () => {
  const engine = openMemoryEngine(silentLog);
  return { engine, env: {}, cleanup: () => engine.close() };
});
