/**
 * One keep-alive HTTP/1.1 client per provider. Sockets are bounded per origin and in total so a
 * burst of pushes cannot open thousands of connections to one push service, and every request
 * has a deadline: a push service that accepts and never answers must not hold a worker slot.
 */
import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";

export interface HttpClientOptions {
  readonly timeoutMs: number;
  /** Sockets per origin; the total is four times this. */
  readonly maxSockets: number;
  /**
   * Name resolution for every connection (default: the system's). Providers whose targets come
   * from users get one that refuses internal addresses, so the address connected to is the one
   * checked (no DNS-rebinding gap between checkTarget and the connection).
   */
  readonly lookup?: LookupFunction;
}

export interface HttpAnswer {
  readonly kind: "answer";
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** The request never got an answer (refused, reset, timed out, aborted). */
export interface HttpNetworkFailure {
  readonly kind: "network";
  readonly reason: string;
}

export interface HttpClient {
  post(url: URL, headers: Record<string, string | number>, body: Buffer | string, signal?: AbortSignal): Promise<HttpAnswer | HttpNetworkFailure>;
  close(): void;
}

/** Answers larger than this are cut: only error bodies are read, and they are small. */
const MAX_ANSWER_BYTES = 64 * 1024;

export function createHttpClient(options: HttpClientOptions): HttpClient {
  const agentOptions = {
    keepAlive: true,
    maxSockets: options.maxSockets,
    maxTotalSockets: options.maxSockets * 4,
    maxFreeSockets: options.maxSockets,
    ...(options.lookup ? { lookup: options.lookup } : {}),
  };
  const agents = { http: new http.Agent(agentOptions), https: new https.Agent(agentOptions) };
  return {
    post(url, headers, body, signal) {
      const secure = url.protocol === "https:";
      if (!secure && url.protocol !== "http:") return Promise.resolve({ kind: "network", reason: `unsupported scheme ${url.protocol}` });
      const payload = typeof body === "string" ? Buffer.from(body) : body;
      return new Promise((resolve) => {
        let settled = false;
        const settle = (v: HttpAnswer | HttpNetworkFailure): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          resolve(v);
        };
        const request = (secure ? https : http).request(url, {
          method: "POST",
          agent: secure ? agents.https : agents.http,
          headers: { ...headers, "content-length": payload.length },
        });
        const fail = (reason: string): void => {
          settle({ kind: "network", reason });
          request.destroy();
        };
        // A deadline on the whole exchange, not on socket idleness: a trickling answer counts too.
        const timer = setTimeout(() => fail(`no answer within ${options.timeoutMs} ms`), options.timeoutMs);
        const onAbort = (): void => fail("aborted");
        if (signal?.aborted) return fail("aborted");
        signal?.addEventListener("abort", onAbort, { once: true });
        request.on("error", (err) => fail(err.message));
        request.on("response", (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            if (size < MAX_ANSWER_BYTES) chunks.push(c);
            size += c.length;
          });
          res.on("error", (err) => fail(err.message));
          res.on("end", () =>
            settle({ kind: "answer", status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8").slice(0, MAX_ANSWER_BYTES) }),
          );
        });
        request.end(payload);
      });
    },
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  };
}
