// Push for offline members on the cluster engine: chat's messages in Cassandra, presence in Redis,
// the push queue on NATS JetStream, devices in Cassandra, delivered marks in Redis.
import { useClusterMesh } from "../testkit/cluster-mesh.js";
import { PUSH_DELIVERY_ENV, pushDeliverySuite } from "./push-delivery.suite.js";

const mesh = useClusterMesh("pushdelivery", PUSH_DELIVERY_ENV);

pushDeliverySuite("cluster", () => ({ baseUrl: mesh.baseUrl(), tokenFor: mesh.tokenFor }));
