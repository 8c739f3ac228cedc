import { expect, it } from "vitest";
import { coordinatorConformance } from "../../ports/coordinator.conformance.js";
import { MemoryCoordinationTree, MemoryCoordinator } from "./memory-coordinator.js";

coordinatorConformance(async () => {
  const tree = new MemoryCoordinationTree();
  const sessions: MemoryCoordinator[] = [];
  return {
    open: async () => {
      const s = tree.session();
      sessions.push(s);
      return s;
    },
    closeSession: async (c) => (c as MemoryCoordinator).close(),
    cleanup: async () => sessions.forEach((s) => s.close()),
  };
});

it("a closed memory session reports expired and refuses calls with Unavailable", async () => {
  const c = new MemoryCoordinator();
  const states: string[] = [];
  c.onSessionState((s) => states.push(s));
  c.close();
  expect(states).toEqual(["expired"]);
  await expect(c.get("/x")).rejects.toMatchObject({ kind: "Unavailable" });
});
