import { expect, it } from "vitest";
import { openMemoryEngine } from "../../../platform/engine.js";
import { silentLog } from "../../../platform/engines/log.js";
import { deviceStoreConformance } from "../device-store.conformance.js";
import { createDeviceStore } from "../store.js";
import { MemoryDeviceStore } from "./memory-device-store.js";

deviceStoreConformance("memory", async () => new MemoryDeviceStore());

it("createDeviceStore shares one memory store per engine", async () => {
  const engine = openMemoryEngine(silentLog);
  const dev = { userId: "u", deviceId: "d", platform: "fcm" as const, token: "t", displayName: "" };
  await createDeviceStore(engine).register(dev, 5, 1);
  expect(await createDeviceStore(engine).list("u")).toHaveLength(1);
  expect(await createDeviceStore(openMemoryEngine(silentLog)).list("u")).toEqual([]);
});
