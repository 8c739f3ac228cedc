/**
 * Tests that call internal gRPC servers directly must prove the caller the way the gateway does:
 * with an identity assertion signed by the mesh secret (platform/identity-assertion.ts). This
 * signs with a test secret; servers under test verify with the same one (set
 * SWITCHBOARD_MESH_SECRET=TEST_MESH_SECRET, or pass testMeshKey to verifiedIdentity).
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { KeyObject } from "node:crypto";
import { meshKey, signIdentityAssertion } from "../platform/identity-assertion.js";
import { IDENTITY_ASSERTION_HEADER, type Identity, type IdentityKind } from "../platform/identity.js";

export const TEST_MESH_SECRET = "switchboard-test-mesh-secret-0123456789abcdef";
export const testMeshKey: KeyObject = meshKey(TEST_MESH_SECRET);

export interface SignOptions {
  /** Another key (e.g. a wrong secret). */
  readonly key?: KeyObject;
  /** The signing clock (e.g. long ago, for an expired assertion). */
  readonly nowMs?: number;
}

/** `/pkg.Service/Method` of a protobuf-es method, or a path as given. */
export function methodPath(method: DescMethod | string): string {
  return typeof method === "string" ? method : `/${method.parent.typeName}/${method.name}`;
}

/** Headers proving `userId` to the server of `method`. */
export function assertionHeaders(userId: string, method: DescMethod | string, opts: SignOptions & { kind?: IdentityKind } = {}): Headers {
  const identity: Identity = { userId, kind: opts.kind ?? "user" };
  return new Headers({ [IDENTITY_ASSERTION_HEADER]: signIdentityAssertion(opts.key ?? testMeshKey, identity, methodPath(method), opts.nowMs) });
}

/**
 * Stands in for the real assertion until a `signingClient` knows the method being called: lets a
 * suite write `client.getLink(req, as(user))` for every method. Never reaches a server (a
 * server seeing it would ignore it anyway: it is not an assertion).
 */
const ACT_AS_HEADER = "x-test-act-as";

/** Call options acting as `userId`; only a client wrapped by `signingClient` turns them into an assertion. */
export function actingAs(userId: string, kind: IdentityKind = "user"): { headers: Headers } {
  return { headers: new Headers({ [ACT_AS_HEADER]: Buffer.from(JSON.stringify({ userId, kind })).toString("base64url") }) };
}

/** `client` with every call's actingAs(...) replaced by an assertion signed for that call's method. */
export function signingClient<C extends object>(client: C, desc: DescService, key: KeyObject = testMeshKey): C {
  const byLocalName = new Map(desc.methods.map((m) => [m.localName, m]));
  return new Proxy(client, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      const method = typeof prop === "string" ? byLocalName.get(prop) : undefined;
      if (!method || typeof value !== "function") return value;
      return (input: unknown, opts?: { headers?: HeadersInit }) => {
        const headers = new Headers(opts?.headers);
        const actAs = headers.get(ACT_AS_HEADER);
        if (actAs !== null) {
          headers.delete(ACT_AS_HEADER);
          const { userId, kind } = JSON.parse(Buffer.from(actAs, "base64url").toString("utf8")) as { userId: string; kind: IdentityKind };
          assertionHeaders(userId, method, { key, kind }).forEach((v, k) => headers.set(k, v));
        }
        return (value as (i: unknown, o: unknown) => unknown).call(target, input, { ...opts, headers });
      };
    },
  });
}
