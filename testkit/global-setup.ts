// vitest globalSetup of the `integration` project: starts ZooKeeper, NATS, Redis and Cassandra
// once per run, hands their connection info to tests (inject("infra")), stops them afterwards
// and fails the run if any switchboard-it- process of this run outlives the teardown.
import type { TestProject } from "vitest/node";
import { assertNoOrphans, startInfra, type InfraInfo } from "./servers/index.js";

declare module "vitest" {
  export interface ProvidedContext {
    infra: InfraInfo;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const infra = await startInfra({ log: (line) => console.log(line) });
  project.provide("infra", infra.info);
  return async () => {
    try {
      await infra.stop();
    } finally {
      // generous: a server a test file forgot to stop is still being shut down by its supervisor
      await assertNoOrphans({ waitMs: 25_000 });
    }
  };
}
