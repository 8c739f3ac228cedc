/**
 * Local stand-ins for the push providers that cannot be reached from here (FCM, APNs, Web Push
 * services) plus a webhook receiver, each on 127.0.0.1 port 0 speaking the provider's documented
 * HTTP API, verifying the credentials a real one would, recording what it received and
 * scriptable per target (services/push/README.md, "Providers").
 *
 * `startPushEndpoints()` starts all four with fresh credentials and gives the matching
 * `pushProviders` config (key files written to a temp dir removed by close()).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PushProvidersConfig } from "../platform/config.js";
import { startApnsServer, type ApnsServer } from "./push-endpoints/apns-server.js";
import { makeApnsKey, makeVapidKeys, type TestApnsKey, type TestServiceAccount } from "./push-endpoints/credentials.js";
import { startFcmServer, type FcmServer } from "./push-endpoints/fcm-server.js";
import { makeWebhookSecret, startWebhookServer, type WebhookServer } from "./push-endpoints/webhook-server.js";
import { startWebPushServer, type WebPushServer } from "./push-endpoints/webpush-server.js";

export { apnsError, startApnsServer, type ApnsServer } from "./push-endpoints/apns-server.js";
export {
  makeApnsKey,
  makeBrowserSubscription,
  makeServiceAccount,
  makeVapidKeys,
  type BrowserSubscription,
  type TestApnsKey,
  type TestServiceAccount,
} from "./push-endpoints/credentials.js";
export { decryptAes128gcm, startWebPushServer, type WebPushServer } from "./push-endpoints/webpush-server.js";
export { fcmError, startFcmServer, type FcmServer } from "./push-endpoints/fcm-server.js";
export { makeWebhookSecret, startWebhookServer, type WebhookServer } from "./push-endpoints/webhook-server.js";
export type { ProviderName, Received, ScriptedAnswer } from "./push-endpoints/script.js";

export const APNS_TEST_TOPIC = "dev.switchboard.test";

export interface PushEndpoints {
  readonly fcm: FcmServer;
  readonly apns: ApnsServer;
  readonly webPush: WebPushServer;
  readonly webhook: WebhookServer;
  readonly credentials: {
    readonly serviceAccount: TestServiceAccount;
    readonly apnsKey: TestApnsKey;
    readonly vapid: { readonly publicKey: string; readonly privateKey: string; readonly subject: string };
    readonly webhookKey: Buffer;
    readonly webhookSecret: string;
  };
  /** Every provider configured against these servers (as SWITCHBOARD_PUSH_* would give it). */
  readonly config: PushProvidersConfig;
  /** The same as environment variables, for a child process. */
  readonly env: Readonly<Record<string, string>>;
  close(): Promise<void>;
}

export async function startPushEndpoints(): Promise<PushEndpoints> {
  const vapid = makeVapidKeys();
  const apnsKey = makeApnsKey();
  const secret = makeWebhookSecret();
  const [fcm, apns, webPush, webhook] = await Promise.all([
    startFcmServer(),
    startApnsServer({ key: apnsKey, topic: APNS_TEST_TOPIC }),
    startWebPushServer({ vapidPublicKey: vapid.publicKey }),
    startWebhookServer({ key: secret.key }),
  ]);
  const serviceAccount = fcm.newServiceAccount();
  const dir = mkdtempSync(join(tmpdir(), "switchboard-push-endpoints-"));
  const serviceAccountFile = join(dir, "service-account.json");
  const apnsKeyFile = join(dir, `AuthKey_${apnsKey.keyId}.p8`);
  writeFileSync(serviceAccountFile, JSON.stringify(serviceAccount.json), { mode: 0o600 });
  writeFileSync(apnsKeyFile, apnsKey.p8, { mode: 0o600 });
  const config: PushProvidersConfig = {
    vapid,
    fcmServiceAccountFile: serviceAccountFile,
    fcmEndpoint: fcm.url,
    apns: { keyFile: apnsKeyFile, keyId: apnsKey.keyId, teamId: apnsKey.teamId, topic: APNS_TEST_TOPIC },
    apnsEndpoint: apns.url,
    webhookSecret: secret.key,
    timeoutMs: 5_000,
    maxSockets: 8,
  };
  const env = {
    SWITCHBOARD_PUSH_VAPID_PUBLIC_KEY: vapid.publicKey,
    SWITCHBOARD_PUSH_VAPID_PRIVATE_KEY: vapid.privateKey,
    SWITCHBOARD_PUSH_VAPID_SUBJECT: vapid.subject,
    SWITCHBOARD_PUSH_FCM_SERVICE_ACCOUNT_FILE: serviceAccountFile,
    SWITCHBOARD_PUSH_FCM_ENDPOINT: fcm.url,
    SWITCHBOARD_PUSH_APNS_KEY_FILE: apnsKeyFile,
    SWITCHBOARD_PUSH_APNS_KEY_ID: apnsKey.keyId,
    SWITCHBOARD_PUSH_APNS_TEAM_ID: apnsKey.teamId,
    SWITCHBOARD_PUSH_APNS_TOPIC: APNS_TEST_TOPIC,
    SWITCHBOARD_PUSH_APNS_ENDPOINT: apns.url,
    SWITCHBOARD_PUSH_WEBHOOK_SECRET: secret.text,
  };
  return {
    fcm,
    apns,
    webPush,
    webhook,
    credentials: { serviceAccount, apnsKey, vapid, webhookKey: secret.key, webhookSecret: secret.text },
    config,
    env,
    async close() {
      await Promise.all([fcm.close(), apns.close(), webPush.close(), webhook.close()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
