/**
 * One TCP port for HTTP/1.1 and cleartext HTTP/2. Browsers (Connect, gRPC-web, redirects)
 * speak HTTP/1.1; grpcurl, buf curl and gRPC clients speak h2c with prior knowledge. Node
 * cannot serve both from one http server without TLS/ALPN, so we look at the first bytes of
 * each connection: the HTTP/2 client preface is fixed, and no HTTP/1.1 request starts with it.
 * With TLS on, every connection is TLS (ALPN offers h2 and http/1.1) and the same look at the
 * first decrypted bytes picks the server, so budgets, deadlines and fairness are the same.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { Duplex } from "node:stream";
import tls from "node:tls";
import { createFairAdmission } from "./fair-admission.js";
import { createFairIntake, type FairIntake } from "./fair-intake.js";
import { addressKey, Budget, DEFAULT_TRANSPORT_LIMITS, type TransportEvents, type TransportLimits } from "./transport-limits.js";

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
/**
 * A session that keeps opening streams after this many were refused is closed: each refused
 * HEADERS still costs a stream object (about 0.1-0.3 ms here), so a client ignoring refusals
 * must not loop for free. A conforming client retries a refused stream later, rarely 10 at once.
 */
const REFUSED_STREAMS_PER_SESSION = 10;
const ignore = (): void => {};
const REFUSED = Object.assign(new Error("stream refused by a transport budget"), { code: "ERR_STREAM_REFUSED" });
/** HTTP/2 requests started per event-loop turn before the rest wait their turn (fair-admission.ts). */
const STREAM_STARTS_PER_TURN = 16;
/**
 * HTTP/2 bytes parsed per event-loop turn across all sessions (fair-intake.ts), in whole
 * reads: about 200 HEADERS frames of a flood, a few tens of ms of parsing and refusing here,
 * while a legitimate session rarely has that much in one turn.
 */
const H2_BYTES_PER_TURN = 32 * 1024;
/** While closing, how often HTTP/1.1 connections that finished their request are closed. */
const CLOSE_SWEEP_MS = 20;

export type RequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export interface OnePortServer {
  readonly tcp: net.Server;
  readonly http1: http.Server;
  readonly http2: http2.Http2Server;
  listen(port: number, host: string): Promise<number>;
  /** Stop accepting, let in-flight requests finish for up to graceMs, then destroy what is left. */
  close(graceMs: number): Promise<void>;
  /** What the transport holds now (the budgets of TransportLimits). */
  stats(): { readonly connections: number; readonly streams: number };
}

type Protocol = "h2" | "http1" | "more";

export function detectProtocol(head: Buffer): Protocol {
  const n = Math.min(head.length, H2_PREFACE.length);
  if (head.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) {
    return n === H2_PREFACE.length ? "h2" : "more";
  }
  return "http1";
}

export interface OnePortOptions {
  /** Longest an HTTP/1.1 client may take to send a request's headers (408 then). Default 30 s. */
  readonly headersTimeoutMs?: number;
  /** Longest an HTTP/1.1 client may take to send a whole request (408 then). Default 120 s. */
  readonly requestTimeoutMs?: number;
  /** How often those two are checked. Default 2 s (Node's own default is 30 s). */
  readonly timeoutCheckMs?: number;
  /** Connection and stream budgets and deadlines; unset fields take DEFAULT_TRANSPORT_LIMITS. */
  readonly limits?: Partial<TransportLimits>;
  readonly events?: TransportEvents;
  /** Serve TLS only, with the context current at each accept (gateway/tls-context.ts). */
  readonly tls?: { current(): tls.SecureContext };
}

/** An accepted connection: whom its budgets are charged to, and its first-bytes deadline. */
interface Accepted {
  readonly key: string;
  readonly deadline: NodeJS.Timeout;
}

export function createOnePortServer(handler: RequestHandler, options: OnePortOptions = {}): OnePortServer {
  const limits: TransportLimits = { ...DEFAULT_TRANSPORT_LIMITS, ...options.limits };
  const refused = options.events?.onRefused ?? (() => {});
  const http1 = http.createServer(
    {
      keepAliveTimeout: 65_000,
      headersTimeout: options.headersTimeoutMs ?? 30_000,
      requestTimeout: options.requestTimeoutMs ?? 120_000,
      connectionsCheckingInterval: options.timeoutCheckMs ?? 2_000,
      maxHeaderSize: limits.maxHeaderBytes,
    },
    handler as http.RequestListener,
  );
  // http.Server tracks its connections (headersTimeout / requestTimeout against clients that
  // trickle a request in, closeIdleConnections) only from its 'listening' event on; it never
  // listens itself here (the sockets come from `tcp`), so start that tracking now.
  http1.emit("listening");
  const h2 = http2.createServer(
    {
      maxSessionMemory: limits.h2MaxSessionMemoryMb,
      settings: {
        maxConcurrentStreams: limits.h2MaxStreamsPerConnection,
        maxHeaderListSize: limits.maxHeaderBytes,
      },
    },
    handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
  );
  const connections = new Budget(limits.maxConnections, limits.maxConnectionsPerAddress);
  const streams = new Budget(limits.maxStreams, limits.maxStreamsPerAddress);
  const admission = createFairAdmission(STREAM_STARTS_PER_TURN);
  const intake = createFairIntake(H2_BYTES_PER_TURN);
  const sockets = new Set<net.Socket>();
  /** Connections whose first bytes have not told their protocol yet. */
  const undecided = new Set<net.Socket>();
  const h2Sessions = new Set<http2.Http2Session>();
  /** The connection being handed to the HTTP/2 server; its 'session' event fires synchronously. */
  let handingOver: Accepted | undefined;
  h2.on("session", (session) => {
    h2Sessions.add(session);
    session.once("close", () => h2Sessions.delete(session));
    guardSession(session, handingOver);
  });

  /**
   * Streams are counted against the budgets before any request object or handler exists:
   * Node's own listener (which builds the request and calls the handler) is moved behind ours,
   * so a refused stream costs a RST_STREAM and nothing else, for every protocol and route.
   */
  function guardSession(session: http2.ServerHttp2Session, accepted: Accepted | undefined): void {
    const key = accepted?.key ?? "unknown";
    let open = 0;
    let refusals = 0;
    let idle: NodeJS.Timeout | undefined;
    const armIdle = (): void => {
      idle = setTimeout(() => {
        refused("connection", "h2_idle");
        session.close();
      }, limits.h2IdleTimeoutMs);
      idle.unref();
    };
    armIdle();
    session.once("close", () => clearTimeout(idle));
    const dispatch = session.listeners("stream") as ((...args: unknown[]) => void)[];
    session.removeAllListeners("stream");
    session.on("stream", (stream: http2.ServerHttp2Stream, ...rest: unknown[]) => {
      if (accepted) clearTimeout(accepted.deadline);
      // A stream refused or still waiting for its turn has no request object listening yet;
      // a session torn down by a protocol error errors all its streams, which must not crash.
      stream.on("error", ignore);
      const over = streams.take(key);
      if (over) {
        refused("stream", over === "total" ? "total_streams" : "address_streams");
        stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        // Destroyed now with a shared error: otherwise Node builds a new error (and its
        // source-mapped stack) for every refused stream, the bulk of a refusal's cost.
        stream.destroy(REFUSED);
        refusals += 1;
        if (refusals === REFUSED_STREAMS_PER_SESSION && !session.destroyed) {
          // Torn down at once: the rest of this read's HEADERS are then dropped by nghttp2 and
          // Node without building a stream object for each.
          refused("connection", "refused_stream_flood");
          session.destroy(undefined, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
        }
        return;
      }
      open += 1;
      clearTimeout(idle);
      stream.once("close", () => {
        streams.release(key);
        open -= 1;
        if (open === 0 && !session.closed && !session.destroyed) armIdle();
      });
      admission.admit(
        key,
        () => {
          for (const listener of dispatch) listener.call(session, stream, ...rest);
        },
        () => stream.destroyed || stream.closed,
      );
    });
  }

  // http.Server disables Nagle on the sockets it accepts itself; ours arrive through this
  // server, so it must do the same (small responses would otherwise wait for ACKs).
  const tcp = net.createServer({ noDelay: true }, (raw) => {
    const key = addressKey(raw.remoteAddress);
    const over = connections.take(key);
    if (over) {
      refused("connection", over === "total" ? "total_connections" : "address_connections");
      raw.on("error", () => {});
      raw.resetAndDestroy();
      return;
    }
    // From here on `socket` is what carries HTTP: the TCP socket, or the TLS session over it.
    const socket = options.tls ? serveTls(raw, options.tls.current()) : raw;
    sockets.add(socket);
    undecided.add(socket);
    // From accept, not from the last byte: a client trickling its preface does not extend it.
    const deadline = setTimeout(() => {
      refused("connection", "first_bytes_deadline");
      socket.destroy();
    }, limits.firstBytesTimeoutMs);
    deadline.unref();
    raw.once("close", () => {
      clearTimeout(deadline);
      connections.release(key);
      sockets.delete(socket);
      undecided.delete(socket);
    });
    if (socket !== raw) {
      raw.on("error", () => socket.destroy());
      socket.once("close", () => raw.destroy());
    }
    let head: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const protocol = detectProtocol(head);
      if (protocol === "more") return;
      socket.off("data", onData);
      undecided.delete(socket);
      if (protocol === "h2") {
        // The deadline keeps running until the session's first request headers (guardSession).
        handingOver = { key, deadline };
        try {
          h2.emit("connection", replayingStream(socket, head, intake, key));
        } finally {
          handingOver = undefined;
        }
      } else {
        // HTTP/1.1 has its own clock from here: headersTimeout counts from the connection's start.
        clearTimeout(deadline);
        socket.pause();
        socket.unshift(head);
        http1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    let handshaking = socket !== raw;
    if (handshaking) socket.once("secure", () => (handshaking = false));
    socket.on("error", () => {
      // A plaintext client, no common protocol version or cipher, a client that does not
      // trust the certificate: counted, so that a broken certificate shows on a dashboard.
      if (handshaking) {
        handshaking = false;
        refused("connection", "tls_handshake");
      }
      socket.destroy();
    });
  });

  return {
    tcp,
    http1,
    http2: h2,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(port, host, () => {
          tcp.off("error", reject);
          resolve((tcp.address() as net.AddressInfo).port);
        });
      });
    },
    async close(graceMs) {
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      // Idle HTTP/1.1 keep-alive connections and silent ones close now, busy ones as soon as
      // their response is done (swept below); HTTP/2 sessions close gracefully, after their
      // open streams end. Whatever is left when the grace period ends is destroyed.
      http1.close();
      for (const s of undecided) s.end();
      for (const s of h2Sessions) s.close();
      const sweep = setInterval(() => http1.closeIdleConnections(), CLOSE_SWEEP_MS);
      const timer = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, graceMs);
      timer.unref();
      await closed;
      clearInterval(sweep);
      clearTimeout(timer);
    },
    stats: () => ({ connections: connections.total, streams: streams.total }),
  };
}

/** The server side of a TLS session on an accepted TCP socket; ALPN offers h2, then http/1.1. */
function serveTls(raw: net.Socket, secureContext: tls.SecureContext): tls.TLSSocket {
  return new tls.TLSSocket(raw, { isServer: true, secureContext, ALPNProtocols: ["h2", "http/1.1"] });
}

/**
 * Node's HTTP/2 session reads straight from the socket's native handle, so bytes we already
 * read (and would unshift) never reach it. Hand it a stream that replays them first; Node
 * wraps such a stream itself. The socket's address is copied so request logs and per-IP
 * limits still see the peer.
 */
function replayingStream(socket: net.Socket, head: Buffer, intake: FairIntake, key: string): Duplex {
  /** The session wants more bytes (it has not pushed back). */
  let wanted = true;
  const stream = new Duplex({
    read() {
      wanted = true;
      if (lane.pending === 0) socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    // The session hands over a response as several buffers (frame headers, payloads, trailers),
    // and more pile up while a write is in flight: one corked pass makes them one writev call
    // instead of a system call each (those were ~7 % of a busy gateway's CPU).
    writev(chunks, cb) {
      socket.cork();
      const last = chunks.length - 1;
      for (let i = 0; i < last; i++) socket.write(chunks[i]!.chunk);
      socket.write(chunks[last]!.chunk, cb);
      socket.uncork();
    },
    final(cb) {
      socket.end(cb);
    },
    destroy(err, cb) {
      lane.close();
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  // Every byte reaches the session through the intake, so that no turn parses more than its share.
  const lane = intake.lane(key, {
    deliver(chunk) {
      if (!stream.push(chunk)) {
        wanted = false;
        socket.pause();
      }
    },
    hold: () => socket.pause(),
    release() {
      if (wanted) socket.resume();
    },
    onEnd: () => stream.push(null),
  });
  Object.assign(stream, {
    remoteAddress: socket.remoteAddress,
    remotePort: socket.remotePort,
    remoteFamily: socket.remoteFamily,
    localAddress: socket.localAddress,
    localPort: socket.localPort,
  });
  lane.offer(head);
  socket.on("data", (d: Buffer) => lane.offer(d));
  socket.on("end", () => lane.end());
  socket.on("close", () => {
    lane.close();
    stream.destroy();
  });
  socket.on("error", (e) => stream.destroy(e));
  return stream;
}
