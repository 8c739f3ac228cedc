/**
 * How large a request message each gateway method accepts, after decompression and per message
 * on streams. Connect enforces the limit on the compressed bytes, stops inflating at it and
 * refuses to parse beyond it, so the CPU an unauthenticated client can buy with one request
 * (JSON parse, protobuf decode, brotli/gzip inflate) is bounded by these numbers, not by the
 * old 4 MiB.
 *
 * Sizes come from what a legitimate message can hold: a code is at most 32 characters, a long
 * URL at most 2048 (services/shortener/domain/validate.ts); 16 KiB leaves room for that in JSON
 * with every optional field. Operators override per method (SWITCHBOARD_GATEWAY_METHOD_MAX_BYTES)
 * or change the default (SWITCHBOARD_GATEWAY_MAX_MESSAGE_BYTES).
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { ConfigError } from "../platform/config.js";

/** Methods whose requests are tiny by construction. */
const BUILT_IN: Readonly<Record<string, number>> = {
  "switchboard.redirect.v1.RedirectService/Resolve": 1024,
  "switchboard.redirect.v1.RedirectService/WatchClicks": 1024,
  "grpc.health.v1.Health/Check": 1024,
  "grpc.health.v1.Health/Watch": 1024,
  "grpc.health.v1.Health/List": 1024,
  // Reflection requests carry a host and one file or symbol name.
  "grpc.reflection.v1.ServerReflection/ServerReflectionInfo": 2048,
  "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": 2048,
};

export interface MessageLimits {
  /** Largest accepted request message for a method, in bytes. */
  readMaxBytes(service: DescService, method: DescMethod): number;
}

export function methodKey(service: DescService, method: DescMethod): string {
  return `${service.typeName}/${method.name}`;
}

/**
 * The table for the served services: built-in sizes, then the operator's overrides. An override
 * naming a method the gateway does not serve is a ConfigError (a typo would otherwise be silent).
 */
export function createMessageLimits(
  services: readonly DescService[],
  defaultBytes: number,
  overrides: Readonly<Record<string, number>> = {},
): MessageLimits {
  const served = new Set(services.flatMap((s) => s.methods.map((m) => methodKey(s, m))));
  for (const name of Object.keys(overrides)) {
    if (!served.has(name)) {
      throw new ConfigError("SWITCHBOARD_GATEWAY_METHOD_MAX_BYTES", `names ${name}, which the gateway does not serve`);
    }
  }
  return {
    readMaxBytes(service, method) {
      const key = methodKey(service, method);
      return overrides[key] ?? BUILT_IN[key] ?? defaultBytes;
    },
  };
}
