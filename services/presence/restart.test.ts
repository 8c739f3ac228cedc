// Presence restart on the memory engine: the service module is stopped and served again on the
// same living engine (the memory twin of Redis keeps the state, as Redis does across processes).
import { afterAll } from "vitest";
import { loadConfig } from "../../platform/config.js";
import { openMemoryEngine, type Engine } from "../../platform/engine.js";
import { silentLog } from "../../platform/engines/log.js";
import { TEST_MESH_SECRET } from "../../testkit/mesh-identity.js";
import { presenceRestartSuite, RESTART_ENV } from "./restart.suite.js";

const engine: Engine = openMemoryEngine(silentLog);
const config = loadConfig({ SWITCHBOARD_ENGINE: "memory", SWITCHBOARD_MESH_SECRET: TEST_MESH_SECRET, ...RESTART_ENV });
afterAll(() => engine.close());

presenceRestartSuite("memory", () => ({ config, first: async () => engine, second: async () => engine }));
