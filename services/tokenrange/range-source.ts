/**
 * Where a LeaseClient gets its ranges: directly on a Coordinator (in-process, same allocator the
 * service runs) or from TokenRangeService over gRPC.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { TokenRangeService } from "../../gen/switchboard/tokenrange/v1/tokenrange_pb.js";
import { DomainError, type ErrorKind } from "../../platform/errors.js";
import { createGrpcClient, type GrpcClient } from "../../platform/grpc/client.js";
import type { Coordinator } from "../../platform/ports/coordinator.js";
import { RangeAllocator, type RangeAllocatorOptions } from "./domain/range-allocator.js";

export interface LeasedRange {
  /** Inclusive. */
  readonly start: bigint;
  /** Exclusive. */
  readonly end: bigint;
  /** Namespace bound (exclusive), 0n = none. */
  readonly limit: bigint;
}

export interface RangeSource {
  /** Leases [start, end) of `namespace`, end - start <= size. Throws DomainError (Unavailable, InvalidArgument, ResourceExhausted). */
  acquire(namespace: string, size: number): Promise<LeasedRange>;
  close?(): void | Promise<void>;
}

/** In-process source on a Coordinator (the memory engine, or ZooKeeper directly). */
export function directRangeSource(coordinator: Coordinator, options: RangeAllocatorOptions = {}): RangeSource & { readonly allocator: RangeAllocator } {
  const allocator = new RangeAllocator(coordinator, options);
  return {
    allocator,
    acquire: (namespace, size) => allocator.acquire(namespace, BigInt(size)),
  };
}

/** Source over gRPC: a TokenRangeService client, or a "host:port" target (the client is closed with the source). */
export function grpcRangeSource(
  target: string | GrpcClient<typeof TokenRangeService>,
  options: { timeoutMs?: number } = {},
): RangeSource {
  const own = typeof target === "string";
  const client = own ? createGrpcClient(TokenRangeService, target, { defaultTimeoutMs: options.timeoutMs ?? 5_000 }) : target;
  return {
    async acquire(namespace, size) {
      try {
        const r = await client.acquireRange({ namespace, size: BigInt(size) });
        return { start: r.start, end: r.end, limit: r.limit };
      } catch (e) {
        throw toDomain(e);
      }
    },
    close() {
      if (own) client.close();
    },
  };
}

const CODE_TO_KIND: Partial<Record<Code, ErrorKind>> = {
  [Code.InvalidArgument]: "InvalidArgument",
  [Code.ResourceExhausted]: "ResourceExhausted",
  [Code.NotFound]: "NotFound",
  [Code.FailedPrecondition]: "FailedPrecondition",
  [Code.DeadlineExceeded]: "Unavailable",
  [Code.Unavailable]: "Unavailable",
};

function toDomain(e: unknown): DomainError {
  if (e instanceof DomainError) return e;
  const ce = ConnectError.from(e);
  return new DomainError(CODE_TO_KIND[ce.code] ?? "Unavailable", `token-range service: ${ce.rawMessage}`, {}, { cause: e });
}
