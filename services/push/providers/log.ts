/**
 * The embedded default for a platform without credentials: the notification is logged and counts
 * as sent, so the whole flow (queue, worker, outcomes) runs on a laptop with nothing configured.
 */
import type { Logger } from "pino";
import type { Notification, Platform, StoredDevice } from "../ports.js";
import type { PushProvider, SendOutcome } from "./provider.js";

export class LogProvider implements PushProvider {
  constructor(
    readonly platform: Platform,
    private readonly log: Logger,
  ) {}

  async send(device: StoredDevice, n: Notification): Promise<SendOutcome> {
    // The token is a credential for the device: only its length is logged.
    this.log.info(
      { platform: this.platform, notificationId: n.id, userId: device.userId, deviceId: device.deviceId, tokenLength: device.token.length, title: n.title },
      "push (log provider: no credentials for this platform)",
    );
    return { kind: "sent" };
  }
}
