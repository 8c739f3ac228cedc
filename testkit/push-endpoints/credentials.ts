/** Fresh test credentials for each provider, shaped like the real ones. */
import { createECDH, createPublicKey, generateKeyPairSync, randomBytes, randomUUID, type ECDH, type KeyObject } from "node:crypto";

export interface TestServiceAccount {
  /** What the Firebase console downloads (type service_account). */
  readonly json: {
    readonly type: "service_account";
    readonly project_id: string;
    readonly private_key_id: string;
    readonly private_key: string;
    readonly client_email: string;
    readonly client_id: string;
    readonly token_uri: string;
  };
  readonly publicKey: KeyObject;
}

export function makeServiceAccount(tokenUri: string, projectId = "switchboard-test"): TestServiceAccount {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return {
    json: {
      type: "service_account",
      project_id: projectId,
      private_key_id: randomBytes(20).toString("hex"),
      private_key: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      client_email: `push@${projectId}.iam.gserviceaccount.com`,
      client_id: String(Date.now()),
      token_uri: tokenUri,
    },
    publicKey,
  };
}

export interface TestApnsKey {
  /** The .p8 file's text (PKCS#8 P-256). */
  readonly p8: string;
  readonly publicKey: KeyObject;
  readonly keyId: string;
  readonly teamId: string;
}

export function makeApnsKey(): TestApnsKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const id = (): string => randomBytes(8).toString("hex").toUpperCase().slice(0, 10);
  return { p8: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), publicKey, keyId: id(), teamId: id() };
}

/** VAPID keys in web-push's format: raw uncompressed public point and private scalar, base64url. */
export function makeVapidKeys(subject = "mailto:ops@switchboard.test"): { publicKey: string; privateKey: string; subject: string } {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const jwk = privateKey.export({ format: "jwk" });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, "base64url"), Buffer.from(jwk.y!, "base64url")]);
  return { publicKey: point.toString("base64url"), privateKey: jwk.d!, subject };
}

/** The public key object of a raw uncompressed P-256 point (VAPID `k`, a subscription's p256dh). */
export function p256PublicKey(raw: Buffer): KeyObject {
  return createPublicKey({ key: { kty: "EC", crv: "P-256", x: raw.subarray(1, 33).toString("base64url"), y: raw.subarray(33, 65).toString("base64url") }, format: "jwk" });
}

export interface BrowserSubscription {
  /** PushSubscription.toJSON(), what a browser hands the app: the device token. */
  readonly json: { readonly endpoint: string; readonly keys: { readonly p256dh: string; readonly auth: string } };
  /** The user agent's side: the ECDH key and auth secret the push payload is encrypted to. */
  readonly ecdh: ECDH;
  readonly authSecret: Buffer;
}

export function makeBrowserSubscription(pushServiceUrl: string): BrowserSubscription {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  const authSecret = randomBytes(16);
  const endpoint = new URL(`/push/${randomUUID()}`, pushServiceUrl).toString();
  return { json: { endpoint, keys: { p256dh: ecdh.getPublicKey().toString("base64url"), auth: authSecret.toString("base64url") } }, ecdh, authSecret };
}
