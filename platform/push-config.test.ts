// The push section of the configuration (platform/config.ts pushConfig).
import { describe, expect, it } from "vitest";
import { ConfigError, DEFAULT_WEB_PUSH_HOSTS, loadConfig } from "./config.js";

const refusal = (env: Record<string, string>): string => {
  try {
    loadConfig(env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error("expected a ConfigError");
};

describe("push config", () => {
  it("defaults: 5 devices, 24 h default and 7 days longest expiry, the browser push services, no webhooks, no private targets", () => {
    expect(loadConfig({}).push).toEqual({
      maxDevicesPerUser: 5,
      defaultTtlMs: 86_400_000,
      maxTtlMs: 604_800_000,
      webPushHosts: DEFAULT_WEB_PUSH_HOSTS,
      webhookHosts: [],
      allowPrivateTargets: false,
      workerConcurrency: 64,
      ackWaitMs: 60_000,
      retryBaseMs: 1_000,
      retryMaxMs: 300_000,
    });
    expect(DEFAULT_WEB_PUSH_HOSTS).toEqual(["fcm.googleapis.com", "updates.push.services.mozilla.com", "*.push.apple.com", "*.notify.windows.com"]);
  });

  it("host lists: trimmed, lower-cased, brackets dropped; none means none, empty the default", () => {
    const c = loadConfig({
      SWITCHBOARD_PUSH_WEB_PUSH_HOSTS: "none",
      SWITCHBOARD_PUSH_WEBHOOK_HOSTS: " Hooks.Example.com , *.partner.io,127.0.0.1,[::1]",
      SWITCHBOARD_PUSH_ALLOW_PRIVATE_TARGETS: "true",
      SWITCHBOARD_PUSH_MAX_DEVICES_PER_USER: "10",
    }).push;
    expect(c.webPushHosts).toEqual([]);
    expect(c.webhookHosts).toEqual(["hooks.example.com", "*.partner.io", "127.0.0.1", "::1"]);
    expect(c.allowPrivateTargets).toBe(true);
    expect(c.maxDevicesPerUser).toBe(10);
    expect(loadConfig({ SWITCHBOARD_PUSH_WEB_PUSH_HOSTS: " " }).push.webPushHosts).toEqual(DEFAULT_WEB_PUSH_HOSTS);
  });

  it.each([
    [{ SWITCHBOARD_PUSH_WEBHOOK_HOSTS: "https://hooks.example.com" }, "SWITCHBOARD_PUSH_WEBHOOK_HOSTS"],
    [{ SWITCHBOARD_PUSH_WEBHOOK_HOSTS: "*" }, "SWITCHBOARD_PUSH_WEBHOOK_HOSTS"],
    [{ SWITCHBOARD_PUSH_WEB_PUSH_HOSTS: "a.*.com" }, "SWITCHBOARD_PUSH_WEB_PUSH_HOSTS"],
    [{ SWITCHBOARD_PUSH_MAX_DEVICES_PER_USER: "0" }, "SWITCHBOARD_PUSH_MAX_DEVICES_PER_USER"],
    [{ SWITCHBOARD_PUSH_MAX_TTL_MS: String(8 * 86_400_000) }, "SWITCHBOARD_PUSH_MAX_TTL_MS"],
    [{ SWITCHBOARD_PUSH_MAX_TTL_MS: "3600000", SWITCHBOARD_PUSH_DEFAULT_TTL_MS: "7200000" }, "SWITCHBOARD_PUSH_DEFAULT_TTL_MS"],
    [{ SWITCHBOARD_PUSH_ALLOW_PRIVATE_TARGETS: "maybe" }, "SWITCHBOARD_PUSH_ALLOW_PRIVATE_TARGETS"],
  ])("refuses %o, naming the variable", (env, variable) => {
    expect(refusal(env)).toContain(variable);
  });
});
