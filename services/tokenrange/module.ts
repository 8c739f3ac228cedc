import { TokenRangeService } from "../../gen/switchboard/tokenrange/v1/tokenrange_pb.js";
import type { ServiceModule } from "../module.js";
import { RangeAllocator, DEFAULT_ROOT } from "./domain/range-allocator.js";
import { WorkerLeaseRegistry } from "./domain/worker-leases.js";
import { tokenRangeImpl } from "./service.js";

/** Internal service: counter ranges and worker-id leases on the engine's Coordinator. */
export const tokenrangeModule: ServiceModule = {
  name: "tokenrange",
  desc: TokenRangeService,
  public: false,
  // Ranges and worker ids are leased in ZooKeeper; nothing else is touched.
  needs: ["zookeeper"],
  async create({ engine, log }) {
    const allocator = new RangeAllocator(engine.coordinator, { owner: `tokenrange-${process.pid}` });
    const workers = new WorkerLeaseRegistry(engine.coordinator, DEFAULT_ROOT);
    log.child({ service: "tokenrange" }).info({ root: allocator.root, engine: engine.kind }, "token-range service ready");
    return {
      impl: tokenRangeImpl(allocator, workers),
      close: async () => workers.close(),
    };
  },
};
