// The push registry and enqueue acceptance suite on the cluster engine: devices in real Cassandra
// (a keyspace of its own, dropped after), the queue on real NATS JetStream, dedupe markers in Redis.
import { useClusterMesh } from "../testkit/cluster-mesh.js";
import { PUSH_E2E_ENV, pushEndToEndSuite } from "./push-e2e.suite.js";

const mesh = useClusterMesh("pushe2e", PUSH_E2E_ENV);

pushEndToEndSuite("cluster", () => ({
  baseUrl: mesh.baseUrl(),
  tokenFor: mesh.tokenFor,
  pushAddress: `127.0.0.1:${mesh.running().grpcPorts.push}`,
  engine: mesh.running().engine!,
  keyspace: mesh.keyspace,
}));
