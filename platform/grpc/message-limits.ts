/**
 * Largest message a mesh hop (grpc-js client or server) sends or accepts. The largest answer in
 * the mesh is a BulkCreateLinks report: 10,000 links whose URLs may each be 2,048 characters,
 * about 22 MB. Only the gateway and mesh processes call these ports; the public edge bounds what
 * callers send with far smaller per-method limits (gateway/rpc-limits.ts).
 */
export const MESH_MAX_MESSAGE_BYTES = 32 * 1024 * 1024;
