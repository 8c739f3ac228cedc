/**
 * One provider per platform. A platform without credentials gets the log provider, so the
 * embedded mesh runs with nothing configured; the log says which platforms send for real.
 */
import { createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import type { LookupFunction } from "node:net";
import type { Logger } from "pino";
import { ConfigError, type PushProvidersConfig } from "../../../platform/config.js";
import type { Platform } from "../ports.js";
import { ApnsProvider } from "./apns.js";
import { FcmProvider } from "./fcm.js";
import { parseServiceAccount } from "./google-token.js";
import { LogProvider } from "./log.js";
import type { PushProvider } from "./provider.js";
import type { CheckTarget } from "./target.js";
import { WebhookProvider } from "./webhook.js";
import { WebPushProvider } from "./webpush.js";

/** How the targets users give (webhook URLs, Web Push endpoints) are checked before and while connecting. */
export interface TargetGuard {
  readonly checkTarget: CheckTarget;
  /** Resolution of the connection itself (refuses internal addresses: no DNS-rebinding gap). */
  readonly lookup?: LookupFunction;
}

export interface ProviderOptions {
  /** Refuses webhook and Web Push targets users must not make us call (both, unless set apart below). */
  readonly checkTarget?: CheckTarget;
  readonly webPushGuard?: TargetGuard;
  readonly webhookGuard?: TargetGuard;
  readonly now?: () => number;
}

export function createProviders(config: PushProvidersConfig, log: Logger, options: ProviderOptions = {}): Map<Platform, PushProvider> {
  const http = { timeoutMs: config.timeoutMs, maxSockets: config.maxSockets, ...(options.now ? { now: options.now } : {}) };
  const real: Partial<Record<Platform, PushProvider>> = {};
  const guard = (g: TargetGuard | undefined) =>
    g ? { checkTarget: g.checkTarget, ...(g.lookup ? { lookup: g.lookup } : {}) } : options.checkTarget ? { checkTarget: options.checkTarget } : {};
  if (config.vapid) real["web-push"] = new WebPushProvider({ ...http, vapid: config.vapid, ...guard(options.webPushGuard) });
  if (config.fcmServiceAccountFile) {
    real.fcm = new FcmProvider({ ...http, endpoint: config.fcmEndpoint, serviceAccount: readCredential("SWITCHBOARD_PUSH_FCM_SERVICE_ACCOUNT_FILE", config.fcmServiceAccountFile, parseServiceAccount) });
  }
  if (config.apns) {
    const key = readCredential("SWITCHBOARD_PUSH_APNS_KEY_FILE", config.apns.keyFile, (text) => (createPrivateKey(text), text));
    real.apns = new ApnsProvider({ ...http, ...config.apns, key, endpoint: config.apnsEndpoint });
  }
  if (config.webhookSecret) {
    real.webhook = new WebhookProvider({ ...http, secret: config.webhookSecret, ...guard(options.webhookGuard) });
  }
  const platforms: Platform[] = ["web-push", "fcm", "apns", "webhook"];
  const providers = new Map<Platform, PushProvider>(platforms.map((p) => [p, real[p] ?? new LogProvider(p, log)]));
  const logged = platforms.filter((p) => !real[p]);
  log.info(
    { real: platforms.filter((p) => real[p]), logOnly: logged },
    logged.length ? `push providers: ${logged.join(", ")} only logged (no credentials configured)` : "push providers: every platform sends for real",
  );
  return providers;
}

/** A credential file that is missing or malformed stops the process with one line naming the variable. */
function readCredential<T>(variable: string, path: string, parse: (text: string) => T): T {
  try {
    return parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new ConfigError(variable, `${path}: ${(err as Error).message}`);
  }
}
