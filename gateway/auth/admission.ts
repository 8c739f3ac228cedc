/**
 * Authentication before a request body is read. The gateway knows the method from the path
 * (`/<service>/<method>`) and the credentials from the headers, so a call that needs credentials
 * and has none (or bad ones) is refused before a single body byte is inflated or parsed: an
 * unauthenticated client cannot make the gateway decode anything but Resolve, health and
 * reflection requests, which are small by their limits (rpc-limits.ts).
 *
 * The identity goes into the call's context values (identityKey); authInterceptor reads it from
 * there and applies the rate limits, so credentials are checked once per call.
 */
import type { ConnectError, ContextValues } from "@connectrpc/connect";
import type { Logger } from "pino";
import { toConnectError } from "../../platform/grpc/status.js";
import { identityKey } from "../../platform/identity.js";
import type { Authenticator, HeaderReader } from "./authenticator.js";
import { AuthError, MISSING_CREDENTIALS } from "./errors.js";
import { isPublicMethod, refusalKey } from "./interceptor.js";

/**
 * Admits or refuses one call from its path and headers. On success the identity (if the method
 * needs one) is in `values`; on refusal the error to answer with is returned (and kept in values).
 */
export type Admission = (service: string, method: string, header: HeaderReader, values: ContextValues) => Promise<ConnectError | undefined>;

export function createAdmission(deps: { authenticator: Authenticator; log: Logger }): Admission {
  return async (service, method, header, values) => {
    if (isPublicMethod(service, method)) return undefined;
    try {
      const identity = await deps.authenticator.authenticate(header);
      if (!identity) throw new AuthError("missing", MISSING_CREDENTIALS);
      values.set(identityKey, identity);
      return undefined;
    } catch (e) {
      if (e instanceof AuthError) deps.log.debug({ service, method, reason: e.reason }, "refused credentials");
      const refusal = toConnectError(e, deps.log);
      values.set(refusalKey, refusal);
      return refusal;
    }
  };
}
