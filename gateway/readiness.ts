/**
 * The gateway's /readyz. Each part it depends on is a check with a weight:
 * - critical: without it the gateway cannot serve redirects (its own link store backend, or
 *   its whole engine on the memory engine); one down = not ready (503), the load balancer drains it;
 * - degraded: a service or backend whose loss costs features, not redirects (an upstream
 *   service, Redis, NATS, ZooKeeper); down = still ready (200), named in `degraded`.
 * A probe that throws or hangs past its deadline marks its parts down, so one hung backend cannot
 * hang /readyz. Checks name parts and states only, never addresses.
 */
export interface Check {
  readonly name: string;
  readonly kind: "service" | "backend";
  readonly critical: boolean;
  readonly ok: boolean;
  readonly detail: string;
}

export interface ReadinessReport {
  readonly ready: boolean;
  /** Names of the non-critical parts that are down. */
  readonly degraded: readonly string[];
  readonly checks: readonly Check[];
}

export interface PartProbe {
  run(): Promise<readonly Check[]>;
  /** The checks to report when `run` fails or does not answer in time. */
  failed(detail: string): readonly Check[];
}

export type ReadinessProbe = () => Promise<ReadinessReport>;

export function reportOf(checks: readonly Check[]): ReadinessReport {
  return {
    ready: checks.every((c) => c.ok || !c.critical),
    degraded: checks.filter((c) => !c.ok && !c.critical).map((c) => c.name),
    checks,
  };
}

export function combineProbes(probes: readonly PartProbe[], timeoutMs = 2_000): ReadinessProbe {
  return async () => {
    const results = await Promise.all(
      probes.map((p) => withTimeout(p.run(), timeoutMs).catch((e: unknown) => p.failed(e instanceof Error && /^no answer/.test(e.message) ? e.message : "probe failed"))),
    );
    return reportOf(results.flat());
  };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
