/**
 * Keyspace DDL per backend flavor. ScyllaDB creates tablet keyspaces by default and (in some
 * versions) does not support LWT/counters on them, so its DDL disables tablets; Cassandra rejects
 * that clause, so it gets the plain form. Pure: unit-tested without a server.
 */
export type CqlFlavor = "cassandra" | "scylla";

export interface KeyspaceSpec {
  readonly keyspace: string;
  readonly flavor: CqlFlavor;
  readonly replicationFactor: number;
  /**
   * When set, NetworkTopologyStrategy with the factor in this data center (production);
   * otherwise SimpleStrategy (single-DC dev and tests).
   */
  readonly dataCenter?: string;
}

const IDENT = /^[a-z][a-z0-9_]{0,47}$/;

export function quoteIdent(name: string): string {
  if (!IDENT.test(name)) throw new Error(`invalid CQL identifier "${name}"`);
  return `"${name}"`;
}

export function keyspaceDdl(spec: KeyspaceSpec): string {
  const rf = spec.replicationFactor;
  if (!Number.isInteger(rf) || rf < 1) throw new Error(`replication factor must be a positive integer (got ${rf})`);
  const replication =
    spec.dataCenter !== undefined
      ? `{'class': 'NetworkTopologyStrategy', '${spec.dataCenter.replace(/'/g, "''")}': ${rf}}`
      : `{'class': 'SimpleStrategy', 'replication_factor': ${rf}}`;
  const base = `CREATE KEYSPACE IF NOT EXISTS ${quoteIdent(spec.keyspace)} WITH replication = ${replication} AND durable_writes = true`;
  return spec.flavor === "scylla" ? `${base} AND tablets = {'enabled': false}` : base;
}
