/**
 * CORS for browser clients of Connect and gRPC-web. The allowed origins come from config;
 * "*" allows any origin (fine for the embedded dev engine, narrowed in deployments).
 */
import type http from "node:http";
import type http2 from "node:http2";
import { cors as connectCors } from "@connectrpc/connect";

const ALLOW_METHODS = [...new Set([...connectCors.allowedMethods, "HEAD", "OPTIONS"])].join(", ");
const ALLOW_HEADERS = [...connectCors.allowedHeaders, "Authorization", "X-Api-Key"].join(", ");
// X-Request-Id: a web app can quote it in an error report (500s name it too).
const EXPOSE_HEADERS = [...connectCors.exposedHeaders, "Retry-After", "X-Request-Id"].join(", ");

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

export interface Cors {
  /** Sets CORS headers; returns true when the request was a preflight and has been answered. */
  handle(req: Req, res: Res): boolean;
}

export function createCors(allowedOrigins: readonly string[]): Cors {
  const any = allowedOrigins.includes("*");
  const allowed = new Set(allowedOrigins);
  return {
    handle(req, res) {
      const origin = req.headers.origin;
      if (typeof origin !== "string" || (!any && !allowed.has(origin))) return false;
      res.setHeader("Access-Control-Allow-Origin", any ? "*" : origin);
      if (!any) res.setHeader("Vary", "Origin");
      res.setHeader("Access-Control-Expose-Headers", EXPOSE_HEADERS);
      if (req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) {
        res.setHeader("Access-Control-Allow-Methods", ALLOW_METHODS);
        res.setHeader("Access-Control-Allow-Headers", ALLOW_HEADERS);
        res.setHeader("Access-Control-Max-Age", "7200");
        res.writeHead(204);
        res.end();
        return true;
      }
      return false;
    },
  };
}
