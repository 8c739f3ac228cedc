import { describe, expect, it } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { RedirectService } from "../gen/switchboard/redirect/v1/redirect_pb.js";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { ConfigError } from "../platform/config.js";
import { createMessageLimits } from "./rpc-limits.js";

const method = (s: typeof ShortenerService | typeof RedirectService | typeof Health, name: string) => s.methods.find((m) => m.name === name)!;

describe("per-method message limits", () => {
  it("uses the built-in sizes, then the default, and lets operators override either", () => {
    const limits = createMessageLimits([ShortenerService, RedirectService, Health], 16_384, {
      "switchboard.shortener.v1.ShortenerService/CreateLink": 4096,
    });
    expect(limits.readMaxBytes(RedirectService, method(RedirectService, "Resolve"))).toBe(1024);
    expect(limits.readMaxBytes(Health, method(Health, "Check"))).toBe(1024);
    expect(limits.readMaxBytes(ShortenerService, method(ShortenerService, "ListLinks"))).toBe(16_384);
    expect(limits.readMaxBytes(ShortenerService, method(ShortenerService, "CreateLink"))).toBe(4096);
  });

  it("refuses an override naming a method the gateway does not serve", () => {
    expect(() => createMessageLimits([ShortenerService], 16_384, { "switchboard.shortener.v1.ShortenerService/CreateLinks": 1 })).toThrow(ConfigError);
    expect(() => createMessageLimits([ShortenerService], 16_384, { "switchboard.shortener.v1.ShortenerService/CreateLinks": 1 })).toThrow(
      /SWITCHBOARD_GATEWAY_METHOD_MAX_BYTES names switchboard.shortener.v1.ShortenerService\/CreateLinks/,
    );
  });
});
