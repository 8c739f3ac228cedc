/**
 * The service side of mesh identity: a `contextValues` hook for startGrpcServer that verifies
 * the gateway's identity assertion on every call and, only when it is valid for exactly this
 * method, sets identityKey. Anything else (no assertion, a plain x-switchboard-user header, a
 * wrong secret, expired, issued for another method) leaves the call anonymous, so requireCaller
 * answers Unauthenticated.
 */
import type { KeyObject } from "node:crypto";
import { createContextValues, type ContextValues } from "@connectrpc/connect";
import type { Logger } from "pino";
import { verifyIdentityAssertion } from "../identity-assertion.js";
import { IDENTITY_ASSERTION_HEADER, identityKey } from "../identity.js";
import type { CallContextInit } from "./service-definition.js";

/** Refused assertions are logged at most this often at warn (a mismatched secret shows up; a flood does not fill the log). */
const WARN_EVERY_MS = 60_000;

export function verifiedIdentity(key: KeyObject, log?: Logger): (init: CallContextInit) => ContextValues {
  let lastWarn = -Infinity;
  return (init) => {
    const values = createContextValues();
    const value = init.header(IDENTITY_ASSERTION_HEADER);
    if (value === null) return values;
    const path = `/${init.service.typeName}/${init.method.name}`;
    const check = verifyIdentityAssertion(key, value, path);
    if (check.ok) {
      values.set(identityKey, check.identity);
    } else if (log) {
      const now = Date.now();
      if (now - lastWarn >= WARN_EVERY_MS) {
        lastWarn = now;
        log.warn({ reason: check.reason, method: path, peer: init.peer }, "refused an identity assertion: the call runs anonymous (is SWITCHBOARD_MESH_SECRET the same everywhere?)");
      } else {
        log.debug({ reason: check.reason, method: path }, "refused an identity assertion");
      }
    }
    return values;
  };
}
