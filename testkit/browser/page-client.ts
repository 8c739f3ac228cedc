/**
 * Runs inside Chromium (bundled by testkit/browser.ts): what a web app built on the generated
 * SDK does, over connect-web's fetch transports. Everything it hands back to the test is plain
 * JSON (ids as strings), so `page.evaluate` can carry it.
 */
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { ChatService, type ChatEvent } from "../../gen/switchboard/chat/v1/chat_pb.js";
import { RedirectService } from "../../gen/switchboard/redirect/v1/redirect_pb.js";
import { ShortenerService } from "../../gen/switchboard/shortener/v1/shortener_pb.js";

export type BrowserProtocol = "connect-json" | "connect" | "grpc-web";

export interface Failure {
  /** retryAfter: the Retry-After header as the page can read it (null when hidden or absent). */
  readonly error: { readonly code: string; readonly message: string; readonly retryAfter: string | null };
}

export interface LiveEvent {
  readonly kind: string;
  readonly channelId?: string;
  readonly messageId?: string;
  readonly text?: string;
}

function transport(baseUrl: string, protocol: BrowserProtocol, token: string | undefined): Transport {
  const interceptors: Interceptor[] = token
    ? [
        (next) => (req) => {
          req.header.set("authorization", `Bearer ${token}`);
          return next(req);
        },
      ]
    : [];
  if (protocol === "grpc-web") return createGrpcWebTransport({ baseUrl, interceptors });
  return createConnectTransport({ baseUrl, interceptors, useBinaryFormat: protocol === "connect" });
}

function failure(e: unknown): Failure {
  const err = ConnectError.from(e);
  return { error: { code: Code[err.code], message: err.rawMessage, retryAfter: err.metadata.get("retry-after") } };
}

async function attempt<T>(fn: () => Promise<T>): Promise<T | Failure> {
  try {
    return await fn();
  } catch (e) {
    return failure(e);
  }
}

function liveEvent(e: ChatEvent): LiveEvent {
  if (e.event.case === "message") {
    const m = e.event.value;
    return { kind: "message", channelId: m.channelId, messageId: m.messageId.toString(), text: m.text };
  }
  return { kind: e.event.case ?? "none" };
}

interface Subscription {
  readonly events: LiveEvent[];
  end?: string;
  readonly abort: AbortController;
}
const subscriptions = new Map<string, Subscription>();

/** Reads a server stream in the background into `name`'s events, and how it ended. */
function collect<T>(name: string, open: (signal: AbortSignal) => AsyncIterable<T>, events: (res: T) => LiveEvent[]): void {
  const sub: Subscription = { events: [], abort: new AbortController() };
  subscriptions.set(name, sub);
  void (async () => {
    try {
      for await (const res of open(sub.abort.signal)) sub.events.push(...events(res));
      sub.end = "closed";
    } catch (e) {
      sub.end = failure(e).error.code;
    }
  })();
}

const api = {
  createLink: (baseUrl: string, protocol: BrowserProtocol, token: string | undefined, longUrl: string) =>
    attempt(async () => {
      const res = await createClient(ShortenerService, transport(baseUrl, protocol, token)).createLink({ longUrl });
      return { code: res.link?.code ?? "", shortUrl: res.link?.shortUrl ?? "" };
    }),

  /** REST, the way a page without the SDK would call it. */
  shortenRest: async (baseUrl: string, token: string | undefined, body: string) => {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${baseUrl}/api/v1/shorten`, { method: "POST", headers, body });
    return { status: res.status, body: await res.text(), requestId: res.headers.get("x-request-id"), retryAfter: res.headers.get("retry-after") };
  },

  createDirectChannel: (baseUrl: string, protocol: BrowserProtocol, token: string, peerUserId: string) =>
    attempt(async () => {
      const res = await createClient(ChatService, transport(baseUrl, protocol, token)).createDirectChannel({ peerUserId });
      return { channelId: res.channel?.channelId ?? "" };
    }),

  sendMessage: (baseUrl: string, protocol: BrowserProtocol, token: string, channelId: string, clientMessageId: string, text: string) =>
    attempt(async () => {
      const res = await createClient(ChatService, transport(baseUrl, protocol, token)).sendMessage({ channelId, clientMessageId, text });
      return { messageId: res.message?.messageId.toString() ?? "" };
    }),

  /** Opens a Subscribe stream that collects what it delivers under `name`. */
  subscribe(baseUrl: string, protocol: BrowserProtocol, token: string, deviceId: string, name: string): void {
    const client = createClient(ChatService, transport(baseUrl, protocol, token));
    collect(name, (signal) => client.subscribe({ deviceId }, { signal }), (res) => res.events.map(liveEvent));
  },

  /** An owner's dashboard: WatchClicks on one code, collected under `name` like a chat stream. */
  watchClicks(baseUrl: string, protocol: BrowserProtocol, token: string, code: string, name: string): void {
    const client = createClient(RedirectService, transport(baseUrl, protocol, token));
    collect(name, (signal) => client.watchClicks({ code }, { signal }), ({ click: c }) =>
      c ? [{ kind: "click", text: `${c.code} ${c.referrer} ${c.country}` }] : [],
    );
  },

  received: (name: string) => {
    const sub = subscriptions.get(name);
    if (!sub) throw new Error(`no subscription ${name}`);
    return { events: sub.events, ...(sub.end !== undefined ? { end: sub.end } : {}) };
  },

  unsubscribe(name: string): void {
    subscriptions.get(name)?.abort.abort();
  },
};

export type PageApi = typeof api;

(globalThis as unknown as { switchboard: PageApi }).switchboard = api;
