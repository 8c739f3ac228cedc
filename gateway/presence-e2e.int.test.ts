// The presence acceptance suite on the cluster engine: real Cassandra (contacts from chat's
// channels), ZooKeeper (the sweeper's lock), NATS (transitions) and Redis (deadlines, the expiry
// index), a keyspace of its own (dropped after).
import { useClusterMesh } from "../testkit/cluster-mesh.js";
import { PRESENCE_E2E_ENV, presenceEndToEndSuite } from "./presence-e2e.suite.js";

const mesh = useClusterMesh("presencee2e", PRESENCE_E2E_ENV);

presenceEndToEndSuite("cluster", () => ({ baseUrl: mesh.baseUrl(), tokenFor: mesh.tokenFor }));
