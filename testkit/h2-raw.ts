/**
 * A hand-written HTTP/2 client for attack tests: it writes frames as a hostile client would
 * (thousands of streams without waiting, CONTINUATION without END_HEADERS, HEADERS followed
 * by RST_STREAM) from any loopback source address, and records what the server answers.
 * node:http2's client cannot do this: it queues streams beyond the server's limit itself.
 */
import net from "node:net";

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const H2_ERROR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, REFUSED_STREAM: 7, CANCEL: 8, ENHANCE_YOUR_CALM: 11 } as const;
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head.writeUInt8(type, 3);
  head.writeUInt8(flags, 4);
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK integer with an N-bit prefix (RFC 7541 5.1). */
function hpackInt(value: number, prefixBits: number, firstByte: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const out = [firstByte | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}

const hpackString = (s: string): Buffer => {
  const bytes = Buffer.from(s, "latin1");
  return Buffer.concat([hpackInt(bytes.length, 7, 0), bytes]);
};

/** A header block of literals without indexing: no dynamic-table state to keep in step. */
export function headerBlock(headers: readonly (readonly [string, string])[]): Buffer {
  return Buffer.concat(headers.flatMap(([n, v]) => [Buffer.from([0]), hpackString(n), hpackString(v)]));
}

export function grpcRequestHeaders(path: string): Buffer {
  return headerBlock([
    [":method", "POST"],
    [":scheme", "http"],
    [":path", path],
    [":authority", "localhost"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
  ]);
}

/** HealthCheckRequest{service: ""} in a gRPC length-prefixed frame. */
export const EMPTY_GRPC_MESSAGE = Buffer.alloc(5);

export interface RawH2Options {
  readonly port: number;
  readonly localAddress?: string;
  /** Acknowledge the server's SETTINGS, as a conforming client does (default true). */
  readonly ackSettings?: boolean;
  /** Send the preface and our SETTINGS on connect (default true). */
  readonly sendPreface?: boolean;
}

/** One raw connection and a record of what the server sent back. */
export class RawH2 {
  readonly socket: net.Socket;
  /** Streams the server reset, by error code. */
  readonly resets = new Map<number, number>();
  /** Streams on which the server sent response HEADERS. */
  readonly answered = new Set<number>();
  goaway: { lastStreamId: number; code: number } | undefined;
  serverSettings: Map<number, number> | undefined;
  closedAt: number | undefined;
  /** Set when the socket closed before connecting or with ECONNRESET: refused at accept. */
  error: string | undefined;
  readonly opened: Promise<boolean>;
  readonly closed: Promise<void>;
  /** Resolves when the server's SETTINGS arrived ("settings") or the connection closed first ("closed"). */
  readonly settled: Promise<"settings" | "closed">;
  private onSettings: (() => void) | undefined;
  private nextStreamId = 1;
  private buf: Buffer = Buffer.alloc(0);

  constructor(readonly options: RawH2Options) {
    this.socket = net.connect({ port: options.port, host: "127.0.0.1", ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
    this.socket.setNoDelay(true);
    this.opened = new Promise((resolve) => {
      this.socket.once("connect", () => resolve(true));
      this.socket.once("close", () => resolve(false));
    });
    this.closed = new Promise((resolve) =>
      this.socket.once("close", () => {
        this.closedAt = Date.now();
        resolve();
      }),
    );
    this.settled = new Promise((resolve) => {
      this.onSettings = () => resolve("settings");
      void this.closed.then(() => resolve("closed"));
    });
    this.socket.on("error", (e: NodeJS.ErrnoException) => (this.error = e.code ?? e.message));
    this.socket.on("data", (d: Buffer) => this.onData(d));
    this.socket.once("connect", () => {
      if (options.sendPreface === false) return;
      // Our SETTINGS (none), and a large connection window so answers never stall on us.
      const grow = Buffer.alloc(4);
      grow.writeUInt32BE(1 << 30);
      this.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0), frame(FRAME.WINDOW_UPDATE, 0, 0, grow)]));
    });
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(bytes);
  }

  /** Bytes for a new stream's request (HEADERS, and DATA with END_STREAM when given a body). */
  streamFrames(block: Buffer, body?: Buffer): { id: number; bytes: Buffer } {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const parts = [frame(FRAME.HEADERS, FLAG.END_HEADERS | (body ? 0 : FLAG.END_STREAM), id, block)];
    if (body) parts.push(frame(FRAME.DATA, FLAG.END_STREAM, id, body));
    return { id, bytes: Buffer.concat(parts) };
  }

  /** Opens `count` gRPC server-streaming calls to `path` in one write. */
  openGrpcStreams(path: string, count: number): number[] {
    const block = grpcRequestHeaders(path);
    const ids: number[] = [];
    const chunks: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const s = this.streamFrames(block, EMPTY_GRPC_MESSAGE);
      ids.push(s.id);
      chunks.push(s.bytes);
    }
    this.write(Buffer.concat(chunks));
    return ids;
  }

  takeStreamId(): number {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    return id;
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    while (this.buf.length >= 9) {
      const length = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + length) break;
      const type = this.buf.readUInt8(3);
      const flags = this.buf.readUInt8(4);
      const stream = this.buf.readUInt32BE(5) & 0x7fffffff;
      const payload = this.buf.subarray(9, 9 + length);
      this.buf = this.buf.subarray(9 + length);
      this.onFrame(type, flags, stream, payload);
    }
  }

  private onFrame(type: number, flags: number, stream: number, payload: Buffer): void {
    if (type === FRAME.SETTINGS && !(flags & FLAG.ACK)) {
      const settings = new Map<number, number>();
      for (let i = 0; i + 6 <= payload.length; i += 6) settings.set(payload.readUInt16BE(i), payload.readUInt32BE(i + 2));
      this.serverSettings = settings;
      this.onSettings?.();
      if (this.options.ackSettings !== false) this.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
    } else if (type === FRAME.RST_STREAM) {
      const code = payload.readUInt32BE(0);
      this.resets.set(code, (this.resets.get(code) ?? 0) + 1);
    } else if (type === FRAME.GOAWAY) {
      this.goaway = { lastStreamId: payload.readUInt32BE(0) & 0x7fffffff, code: payload.readUInt32BE(4) };
    } else if (type === FRAME.HEADERS) {
      this.answered.add(stream);
    } else if (type === FRAME.PING && !(flags & FLAG.ACK)) {
      this.write(frame(FRAME.PING, FLAG.ACK, 0, payload));
    }
  }
}

/** SETTINGS_MAX_CONCURRENT_STREAMS */
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
