// The chat acceptance suite on the cluster engine: real Cassandra, ZooKeeper, NATS and Redis,
// a keyspace of its own (dropped after).
import { useClusterMesh } from "../testkit/cluster-mesh.js";
import { chatEndToEndSuite } from "./chat-e2e.suite.js";

const mesh = useClusterMesh("chate2e");

chatEndToEndSuite("cluster", () => ({ baseUrl: mesh.baseUrl(), tokenFor: mesh.tokenFor }));
