/** TokenRangeService handlers on the domain (RangeAllocator + WorkerLeaseRegistry). */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampDate, timestampFromDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AcquireRangeResponseSchema,
  AcquireWorkerIdResponseSchema,
  GetNamespaceResponseSchema,
  NamespaceSchema,
  ReleaseWorkerIdResponseSchema,
  RenewWorkerIdResponseSchema,
  type TokenRangeService,
} from "../../gen/switchboard/tokenrange/v1/tokenrange_pb.js";
import type { RangeAllocator } from "./domain/range-allocator.js";
import type { WorkerLeaseRegistry } from "./domain/worker-leases.js";

export function tokenRangeImpl(allocator: RangeAllocator, workers: WorkerLeaseRegistry): ServiceImpl<typeof TokenRangeService> {
  return {
    async acquireRange(req) {
      const r = await allocator.acquire(req.namespace, req.size);
      return create(AcquireRangeResponseSchema, { namespace: r.namespace, start: r.start, end: r.end, limit: r.limit });
    },
    async acquireWorkerId(req) {
      const l = await workers.acquire(
        req.namespace,
        req.instanceId,
        req.ttl ? durationMs(req.ttl) : undefined,
        req.clientTime ? timestampDate(req.clientTime).getTime() : undefined,
      );
      return create(AcquireWorkerIdResponseSchema, {
        workerId: l.workerId,
        leaseId: l.leaseId,
        expireTime: timestampFromMs(l.expireAt),
        ...(l.lastTime !== undefined ? { lastTime: timestampFromMs(l.lastTime) } : {}),
        maxWorkers: l.maxWorkers,
        renewInterval: durationFromMs(l.renewIntervalMs),
      });
    },
    async renewWorkerId(req) {
      const expireAt = await workers.renew(
        req.namespace,
        req.workerId,
        req.leaseId,
        req.clientTime ? timestampDate(req.clientTime).getTime() : undefined,
      );
      return create(RenewWorkerIdResponseSchema, { expireTime: timestampFromMs(expireAt) });
    },
    async releaseWorkerId(req) {
      await workers.release(req.namespace, req.workerId, req.leaseId, req.lastTime ? timestampDate(req.lastTime).getTime() : undefined);
      return create(ReleaseWorkerIdResponseSchema, {});
    },
    async getNamespace(req) {
      const ns = await allocator.getNamespace(req.namespace);
      const active = await workers.activeCount(req.namespace);
      return create(GetNamespaceResponseSchema, {
        namespace: create(NamespaceSchema, {
          name: ns.name,
          next: ns.next,
          limit: ns.limit,
          version: BigInt(ns.version),
          ...(ns.updateTime ? { updateTime: timestampFromDate(ns.updateTime) } : {}),
          activeWorkers: active,
        }),
      });
    },
  };
}
