// Per-test-file helpers for integration tests (*.int.test.ts).
import { randomBytes } from "node:crypto";
import cassandra from "cassandra-driver";
import { afterAll, beforeAll, inject } from "vitest";
import type { InfraInfo } from "./servers/index.js";

/** Connection info of the servers that testkit/global-setup.ts started for this run. */
export function infra(): InfraInfo {
  return inject("infra");
}

export interface KeyspaceContext {
  /** The keyspace name (valid once beforeAll has run). */
  readonly keyspace: string;
  /** A cassandra-driver Client connected with that keyspace (valid once beforeAll has run). */
  readonly client: cassandra.Client;
}

/** Options for a cassandra-driver Client pointed at the run's Cassandra. */
export function cassandraClientOptions(keyspace?: string): cassandra.ClientOptions {
  const c = infra().cassandra;
  return {
    contactPoints: [c.contactPoint],
    localDataCenter: c.localDataCenter,
    protocolOptions: { port: c.port },
    ...(keyspace ? { keyspace } : {}),
  };
}

/** Drops a keyspace a test made (processes of the test created it under that name); a missing one is fine. */
export async function dropKeyspace(keyspace: string): Promise<void> {
  const admin = new cassandra.Client(cassandraClientOptions());
  try {
    await admin.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`);
  } finally {
    await admin.shutdown();
  }
}

/** A valid, unique CQL keyspace name: lower-case prefix + time + random, at most 48 chars. */
export function uniqueKeyspaceName(prefix: string): string {
  let p = prefix.toLowerCase().replace(/[^a-z0-9_]/g, "_");
  if (!/^[a-z]/.test(p)) p = `ks_${p}`;
  const suffix = `${Date.now().toString(36)}_${randomBytes(3).toString("hex")}`;
  return `${p.slice(0, 48 - suffix.length - 1)}_${suffix}`;
}

/**
 * Call at the top level of a test file: before all its tests, creates a fresh keyspace
 * (SimpleStrategy, RF 1) on the shared Cassandra and connects a client to it; after them,
 * drops the keyspace and shuts the client down.
 */
export function useKeyspace(prefix: string): KeyspaceContext {
  let keyspace: string | undefined;
  let client: cassandra.Client | undefined;
  beforeAll(async () => {
    const name = uniqueKeyspaceName(prefix);
    const admin = new cassandra.Client(cassandraClientOptions());
    try {
      await admin.connect();
      await admin.execute(
        `CREATE KEYSPACE ${name} WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
      );
    } finally {
      await admin.shutdown();
    }
    keyspace = name;
    client = new cassandra.Client(cassandraClientOptions(name));
    await client.connect();
  });
  afterAll(async () => {
    if (client) {
      try {
        if (keyspace) await client.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`);
      } finally {
        await client.shutdown();
        client = undefined;
      }
    }
  });
  return {
    get keyspace(): string {
      if (!keyspace) throw new Error("useKeyspace(): keyspace is only available inside tests/hooks after beforeAll");
      return keyspace;
    },
    get client(): cassandra.Client {
      if (!client) throw new Error("useKeyspace(): client is only available inside tests/hooks after beforeAll");
      return client;
    },
  };
}
