/** Readiness: the gateway is ready when every upstream it forwards to says SERVING. */
export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface ReadinessReport {
  readonly ready: boolean;
  readonly checks: readonly Check[];
}

export type ReadinessProbe = () => Promise<ReadinessReport>;

/** Runs every probe with a deadline, so one hung backend cannot hang /readyz. */
export function combineProbes(probes: readonly ReadinessProbe[], timeoutMs = 2_000): ReadinessProbe {
  return async () => {
    const reports = await Promise.all(
      probes.map((p) =>
        withTimeout(p(), timeoutMs).catch(
          (e: unknown): ReadinessReport => ({
            ready: false,
            checks: [{ name: "probe", ok: false, detail: e instanceof Error ? e.message : String(e) }],
          }),
        ),
      ),
    );
    const checks = reports.flatMap((r) => r.checks);
    return { ready: reports.every((r) => r.ready), checks };
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
