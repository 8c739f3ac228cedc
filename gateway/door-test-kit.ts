/**
 * For the doors' wire tests (subscribe-door.test.ts, unary-door.test.ts): the door served on an
 * HTTP/2 and an HTTP/1.1 server (what it does not claim answers 404 with x-not-claimed), and the
 * 5-byte envelopes of gRPC / gRPC-web / Connect streaming. Test-only.
 */
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import pino from "pino";
import { Code, ConnectError } from "@connectrpc/connect";
import { identityKey, type Identity } from "../platform/identity.js";
import type { Admission } from "./auth/admission.js";
import type { HttpDoor } from "./gateway.js";

export interface ServedDoor {
  readonly h2Url: string;
  readonly h1Port: number;
  close(): Promise<void>;
}

export async function serveDoor(door: HttpDoor): Promise<ServedDoor> {
  const log = pino({ level: "silent" });
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    if (door(req, res, log) === false) {
      res.writeHead(404, { "x-not-claimed": "1" });
      res.end();
    }
  };
  const h2 = http2.createServer(handler);
  const h1 = http.createServer(handler);
  await new Promise<void>((r) => h2.listen(0, "127.0.0.1", r));
  await new Promise<void>((r) => h1.listen(0, "127.0.0.1", r));
  return {
    h2Url: `http://127.0.0.1:${(h2.address() as AddressInfo).port}`,
    h1Port: (h1.address() as AddressInfo).port,
    async close() {
      await new Promise((r) => h2.close(r));
      await new Promise((r) => h1.close(r));
    },
  };
}

export function envelope(flags: number, data: Uint8Array): Buffer {
  const b = Buffer.alloc(5 + data.byteLength);
  b[0] = flags;
  b.writeUInt32BE(data.byteLength, 1);
  b.set(data, 5);
  return b;
}

export interface Frame {
  readonly flags: number;
  readonly data: Buffer;
}

export function framesOf(body: Buffer): Frame[] {
  const out: Frame[] = [];
  for (let at = 0; at < body.length; ) {
    const len = body.readUInt32BE(at + 1);
    out.push({ flags: body[at]!, data: body.subarray(at + 5, at + 5 + len) });
    at += 5 + len;
  }
  return out;
}

export interface Answer {
  readonly status: number;
  readonly headers: Record<string, unknown>;
  readonly frames: Frame[];
  readonly trailers: Record<string, unknown>;
}

/** One POST over HTTP/1.1 (gRPC-web as a browser sends it), its body read as envelopes. */
export function postH1(port: number, path: string, headers: Record<string, string>, body: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, frames: framesOf(Buffer.concat(chunks)), trailers: {} }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A door's admission for tests: "Bearer <user>" admits <user> (as `base` with that user id); anything else is refused. */
export function bearerAdmission(base: Identity = { userId: "", kind: "user" }): Admission {
  return async (_service, _method, header, values) => {
    const auth = header("authorization");
    if (auth?.startsWith("Bearer ")) {
      values.set(identityKey, { ...base, userId: auth.slice(7) });
      return undefined;
    }
    return new ConnectError("this call needs credentials", Code.Unauthenticated);
  };
}
