import { MemoryPresenceStore } from "./memory-presence-store.js";
import { presenceStoreConformance } from "../presence-store.conformance.js";

presenceStoreConformance("memory", async () => new MemoryPresenceStore());
