/**
 * grpc.health.v1.Health as a transport-neutral ServiceImpl (runs on grpc-js via
 * toGrpcHandlers and on connect-node via router.service).
 *
 * Service "" is the overall server status. Check on an unknown service answers NOT_FOUND;
 * Watch on an unknown service sends SERVICE_UNKNOWN and keeps the stream open, sending every
 * later change (as the protocol says). `shutdown()` marks everything NOT_SERVING, freezes the
 * statuses and ends open Watch streams so a graceful server shutdown is not held up by them.
 */
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthCheckRequest,
  type HealthCheckResponseSchema,
} from "../../gen/grpc/health/v1/health_pb.js";

export { ServingStatus };
type Response = MessageInitShape<typeof HealthCheckResponseSchema>;
type Listener = (status: ServingStatus | undefined, final: boolean) => void;

export class HealthService implements ServiceImpl<typeof Health> {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private frozen = false;

  /** Starts with the overall status ("") SERVING, plus SERVING for each service name given. */
  constructor(services: Iterable<string> = []) {
    this.statuses.set("", ServingStatus.SERVING);
    for (const s of services) this.statuses.set(s, ServingStatus.SERVING);
  }

  /** Sets a service's status ("" = overall) and notifies watchers. Ignored after shutdown(). */
  setStatus(service: string, status: ServingStatus): void {
    if (this.frozen) return;
    this.update(service, status);
  }

  /** Forgets a service: Check answers NOT_FOUND, watchers get SERVICE_UNKNOWN. */
  clearStatus(service: string): void {
    if (this.frozen || !this.statuses.delete(service)) return;
    for (const l of this.listeners.get(service) ?? []) l(undefined, false);
  }

  getStatus(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** Everything NOT_SERVING, statuses frozen, open Watch streams ended after that last message. */
  shutdown(): void {
    if (this.frozen) return;
    for (const service of this.statuses.keys()) this.update(service, ServingStatus.NOT_SERVING);
    this.frozen = true;
    for (const set of this.listeners.values()) for (const l of set) l(ServingStatus.NOT_SERVING, true);
  }

  check(req: HealthCheckRequest): Response {
    const status = this.statuses.get(req.service);
    if (status === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
    return { status };
  }

  async *watch(req: HealthCheckRequest, ctx: HandlerContext): AsyncGenerator<Response> {
    // A queue of statuses not yet sent; only the latest matters, so it holds at most one.
    let pending: ServingStatus | undefined = this.statuses.get(req.service);
    let hasPending = true;
    let final = this.frozen;
    let wake: (() => void) | undefined;
    const listener: Listener = (status, isFinal) => {
      pending = status;
      hasPending = true;
      final ||= isFinal;
      wake?.();
    };
    let set = this.listeners.get(req.service);
    if (!set) this.listeners.set(req.service, (set = new Set()));
    set.add(listener);
    const onAbort = (): void => wake?.();
    ctx.signal.addEventListener("abort", onAbort);
    try {
      let last: ServingStatus | undefined | null = null;
      while (!ctx.signal.aborted) {
        if (hasPending) {
          const status = pending ?? ServingStatus.SERVICE_UNKNOWN;
          hasPending = false;
          if (status !== last) {
            last = status;
            yield { status };
          }
          continue;
        }
        if (final) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(req.service);
    }
  }

  private update(service: string, status: ServingStatus): void {
    const before = this.statuses.get(service);
    this.statuses.set(service, status);
    if (before === status) return;
    for (const l of this.listeners.get(service) ?? []) l(status, false);
  }
}

export { Health };
