/**
 * What consumers (shortener, chat) import from token-range.
 *
 * Counter values:   createLeaseClient({ namespace, source: directRangeSource(engine.coordinator) | grpcRangeSource(target) })
 * Short codes:      encodeCode(counter, key) / decodeCode(code, key), or new CodePermutation(key); key = loadCodeKey(engine.kind, log)
 * Time-sortable ids: new SnowflakeGenerator({ worker: await ZkWorkerId.claim(engine.coordinator, { namespace: "chat", instanceId }) })
 */
export { createLeaseClient, type LeaseClient, type LeaseClientOptions, type LeaseClientStats } from "./lease-client.js";
export { directRangeSource, grpcRangeSource, type LeasedRange, type RangeSource } from "./range-source.js";
export {
  CodePermutation,
  encodeCode,
  decodeCode,
  toBase62,
  fromBase62,
  CODE_LENGTH,
  CODE_SPACE_SIZE,
  ALPHABET,
} from "./code-permutation.js";
export { loadCodeKey, CODE_KEY_ENV, DEV_CODE_KEY } from "./code-key.js";
export {
  SnowflakeGenerator,
  decodeSnowflake,
  SNOWFLAKE_EPOCH_MS,
  MAX_WORKER_ID,
  type SnowflakeOptions,
  type DecodedSnowflake,
} from "./snowflake.js";
export { ZkWorkerId, fixedWorkerId, type WorkerClaim, type WorkerIdSource, type ZkWorkerIdOptions } from "./worker-id.js";
export { RangeAllocator, DEFAULT_ROOT, MAX_RANGE_SIZE, DEFAULT_RANGE_SIZE, type Range } from "./domain/range-allocator.js";
export { validateNamespace, CODE_SPACE, DEFAULT_NAMESPACE_LIMITS } from "./domain/namespace.js";
