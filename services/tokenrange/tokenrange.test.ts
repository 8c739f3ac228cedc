import { MemoryCoordinationTree, MemoryCoordinator } from "../../platform/engines/memory/memory-coordinator.js";
import { tokenRangeConformance } from "./testing/tokenrange.conformance.js";

tokenRangeConformance(async () => {
  const tree = new MemoryCoordinationTree();
  return {
    open: async () => tree.session(),
    closeSession: async (c) => (c as MemoryCoordinator).close(),
  };
});
