/**
 * createProviders from the environment: every platform configured against the local servers
 * sends for real end to end; a platform without credentials falls back to the log provider and
 * the log says which.
 */
import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../../platform/config.js";
import { startPushEndpoints, type PushEndpoints } from "../../../testkit/push-endpoints.js";
import { apnsDeviceToken, testDevice, testNotification } from "../../../testkit/push-endpoints/fixtures.js";
import type { Platform } from "../ports.js";
import { createProviders } from "./index.js";
import { LogProvider } from "./log.js";

function capturingLogger(): { log: pino.Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      out.push(String(chunk));
      done();
    },
  });
  return { log: pino({ level: "info" }, stream), lines: () => out.join("").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

let endpoints: PushEndpoints;
beforeAll(async () => {
  endpoints = await startPushEndpoints();
});
afterAll(() => endpoints.close());

describe("createProviders", () => {
  it("with every SWITCHBOARD_PUSH_* variable set, each platform reaches its (local) provider", async () => {
    const config = loadConfig(endpoints.env).pushProviders;
    const { log, lines } = capturingLogger();
    const providers = createProviders(config, log, { checkTarget: async () => undefined });
    const tokens: Record<Platform, string> = {
      "web-push": JSON.stringify(endpoints.webPush.subscribe().json),
      fcm: "fcm-reg-token",
      apns: apnsDeviceToken(),
      webhook: endpoints.webhook.hook("bob"),
    };
    for (const platform of Object.keys(tokens) as Platform[]) {
      const n = testNotification(Date.now());
      expect(await providers.get(platform)!.send(testDevice(platform, tokens[platform]), n), platform).toEqual({ kind: "sent" });
      const server = { "web-push": endpoints.webPush, fcm: endpoints.fcm, apns: endpoints.apns, webhook: endpoints.webhook }[platform];
      expect(server.received.filter((r) => r.notificationId === n.id), platform).toHaveLength(1);
    }
    expect(lines().find((l) => String(l.msg).startsWith("push providers"))).toMatchObject({ real: ["web-push", "fcm", "apns", "webhook"], logOnly: [] });
    await Promise.all([...providers.values()].map((p) => p.close?.()));
  });

  it("with nothing configured, every platform logs instead of sending and answers sent", async () => {
    const { log, lines } = capturingLogger();
    const providers = createProviders(loadConfig({}).pushProviders, log);
    for (const [platform, provider] of providers) {
      expect(provider).toBeInstanceOf(LogProvider);
      expect(await provider.send(testDevice(platform, "secret-token-value"), testNotification(Date.now(), { id: `log-${platform}` }))).toEqual({ kind: "sent" });
    }
    const logged = lines();
    expect(logged.find((l) => String(l.msg).startsWith("push providers"))).toMatchObject({ real: [], logOnly: ["web-push", "fcm", "apns", "webhook"] });
    expect(logged.filter((l) => typeof l.notificationId === "string" && String(l.notificationId).startsWith("log-"))).toHaveLength(4);
    expect(JSON.stringify(logged), "the device token is a credential and never logged").not.toContain("secret-token-value");
  });

  it("uses the log provider only for the platforms left unconfigured", () => {
    const { SWITCHBOARD_PUSH_APNS_KEY_FILE, SWITCHBOARD_PUSH_APNS_KEY_ID, SWITCHBOARD_PUSH_APNS_TEAM_ID, SWITCHBOARD_PUSH_APNS_TOPIC, ...rest } = endpoints.env;
    void [SWITCHBOARD_PUSH_APNS_KEY_FILE, SWITCHBOARD_PUSH_APNS_KEY_ID, SWITCHBOARD_PUSH_APNS_TEAM_ID, SWITCHBOARD_PUSH_APNS_TOPIC];
    const { log } = capturingLogger();
    const providers = createProviders(loadConfig(rest).pushProviders, log);
    expect(providers.get("apns")).toBeInstanceOf(LogProvider);
    expect(providers.get("fcm")).not.toBeInstanceOf(LogProvider);
    for (const p of providers.values()) void p.close?.();
  });

  it("stops on half-configured or malformed credentials, naming the variable", () => {
    const attempt = (env: Record<string, string>): unknown => {
      try {
        createProviders(loadConfig(env).pushProviders, capturingLogger().log);
        return undefined;
      } catch (err) {
        return err;
      }
    };
    const e = endpoints.env;
    const cases: Array<[Record<string, string>, string]> = [
      [{ SWITCHBOARD_PUSH_VAPID_PUBLIC_KEY: e.SWITCHBOARD_PUSH_VAPID_PUBLIC_KEY! }, "SWITCHBOARD_PUSH_VAPID_PRIVATE_KEY"],
      [{ SWITCHBOARD_PUSH_VAPID_PUBLIC_KEY: "short", SWITCHBOARD_PUSH_VAPID_PRIVATE_KEY: e.SWITCHBOARD_PUSH_VAPID_PRIVATE_KEY!, SWITCHBOARD_PUSH_VAPID_SUBJECT: "mailto:a@b.c" }, "SWITCHBOARD_PUSH_VAPID_PUBLIC_KEY"],
      [{ SWITCHBOARD_PUSH_VAPID_PUBLIC_KEY: e.SWITCHBOARD_PUSH_VAPID_PUBLIC_KEY!, SWITCHBOARD_PUSH_VAPID_PRIVATE_KEY: e.SWITCHBOARD_PUSH_VAPID_PRIVATE_KEY!, SWITCHBOARD_PUSH_VAPID_SUBJECT: "ops" }, "SWITCHBOARD_PUSH_VAPID_SUBJECT"],
      [{ SWITCHBOARD_PUSH_APNS_KEY_FILE: e.SWITCHBOARD_PUSH_APNS_KEY_FILE!, SWITCHBOARD_PUSH_APNS_KEY_ID: "K" }, "SWITCHBOARD_PUSH_APNS_TEAM_ID"],
      [{ SWITCHBOARD_PUSH_WEBHOOK_SECRET: "hunter2" }, "SWITCHBOARD_PUSH_WEBHOOK_SECRET"],
      [{ SWITCHBOARD_PUSH_FCM_SERVICE_ACCOUNT_FILE: "/nonexistent/sa.json" }, "SWITCHBOARD_PUSH_FCM_SERVICE_ACCOUNT_FILE"],
      [{ SWITCHBOARD_PUSH_FCM_SERVICE_ACCOUNT_FILE: e.SWITCHBOARD_PUSH_APNS_KEY_FILE! }, "SWITCHBOARD_PUSH_FCM_SERVICE_ACCOUNT_FILE"],
      [{ SWITCHBOARD_PUSH_APNS_KEY_FILE: e.SWITCHBOARD_PUSH_FCM_SERVICE_ACCOUNT_FILE!, SWITCHBOARD_PUSH_APNS_KEY_ID: "K", SWITCHBOARD_PUSH_APNS_TEAM_ID: "T", SWITCHBOARD_PUSH_APNS_TOPIC: "t" }, "SWITCHBOARD_PUSH_APNS_KEY_FILE"],
      [{ SWITCHBOARD_PUSH_APNS_ENDPOINT: "ftp://apple" }, "SWITCHBOARD_PUSH_APNS_ENDPOINT"],
    ];
    for (const [env, variable] of cases) {
      const err = attempt(env);
      expect(err, variable).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe(variable);
    }
  });

  it("defaults to the providers' production endpoints and a 10 s request timeout", () => {
    const c = loadConfig({}).pushProviders;
    expect(c).toMatchObject({ fcmEndpoint: "https://fcm.googleapis.com", apnsEndpoint: "https://api.push.apple.com", timeoutMs: 10_000, maxSockets: 32 });
  });
});
