/**
 * The paths the gateway answers itself, whatever links exist: gateway.ts and the REST door
 * route by these. The first segment of each is a reserved word of the links grammar
 * (services/links/code-grammar.ts; own-paths.test.ts checks it), so no alias can shadow one and
 * the redirect door never claims one. Connect and gRPC routes (/package.Service/Method) need no
 * entry: a dotted segment is never code-shaped.
 */
export const HOME_PATH = "/";
export const HEALTHZ_PATH = "/healthz";
export const READYZ_PATH = "/readyz";
export const METRICS_PATH = "/metrics";
export const SHORTEN_PATH = "/api/v1/shorten";

export const OWN_PATHS: readonly string[] = [HOME_PATH, HEALTHZ_PATH, READYZ_PATH, METRICS_PATH, SHORTEN_PATH];
