/**
 * What every local provider server shares: a record of what it received, in order, and per-target
 * queues of scripted answers so a test can force each documented answer of the provider.
 */
import type { IncomingHttpHeaders } from "node:http";

export type ProviderName = "fcm" | "apns" | "web-push" | "webhook";

export interface Received {
  readonly provider: ProviderName;
  readonly notificationId: string;
  /** FCM registration token, APNs device token, Web Push endpoint URL, webhook URL. */
  readonly target: string;
  readonly title: string;
  readonly body: string;
  readonly data: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  /** The request body as the provider meant it (FCM message, decrypted Web Push payload, ...). */
  readonly payload: unknown;
  /** The status this server answered. */
  readonly status: number;
  /** When it arrived (epoch ms), where the server records it. */
  readonly at?: number;
}

export interface ScriptedAnswer {
  readonly status: number;
  /** A string is sent as it is; anything else as JSON. */
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

export class Script {
  private readonly queues = new Map<string, ScriptedAnswer[]>();

  /** The next requests for `target` get these answers, in order; later ones are served normally. */
  answer(target: string, ...answers: ScriptedAnswer[]): void {
    this.queues.set(target, [...(this.queues.get(target) ?? []), ...answers]);
  }

  next(target: string): ScriptedAnswer | undefined {
    return this.queues.get(target)?.shift();
  }
}

export function encodeBody(body: unknown): { text: string; json: boolean } {
  if (body === undefined) return { text: "", json: false };
  if (typeof body === "string") return { text: body, json: false };
  return { text: JSON.stringify(body), json: true };
}

export function readBody(req: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}
