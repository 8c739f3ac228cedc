/**
 * A gRPC client on @grpc/grpc-js, typed like Connect's `Client<typeof Svc>` (same call shapes,
 * same CallOptions subset, errors as ConnectError), so callers are transport-neutral.
 *
 * One grpc-js Channel per (target, credentials) is shared by every client created for that
 * target in this process and closed when the last of them is closed.
 */
import type { DescMethod, DescService, MessageInitShape, MessageShape, DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions, type Client } from "@connectrpc/connect";
import {
  Channel,
  Client as GrpcJsClient,
  Metadata,
  connectivityState,
  credentials as grpcCredentials,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientDuplexStream,
  type ClientReadableStream,
  type ClientWritableStream,
  type ServiceError,
  type StatusObject,
  type CallOptions as GrpcCallOptions,
} from "@grpc/grpc-js";
import { headersToMetadata, metadataToHeaders } from "./metadata.js";
import { deserializerFor, grpcPath, serializerFor } from "./service-definition.js";
import { MESH_MAX_MESSAGE_BYTES } from "./message-limits.js";
import { callServerStream, callUnary, localServerAt } from "./in-process.js";

type AnyInit = MessageInitShape<DescMessage>;
type AnyMessage = MessageShape<DescMessage>;

/** The per-call options honoured by createGrpcClient (a subset of Connect's CallOptions). */
export type GrpcCallOptions_ = Pick<CallOptions, "headers" | "signal" | "timeoutMs" | "onHeader" | "onTrailer">;

export interface GrpcClientOptions {
  /** Default per-call timeout when the call gives none; <= 0 or undefined = no deadline. */
  readonly defaultTimeoutMs?: number;
  /** Insecure (h2c) by default: internal traffic inside the cluster network. */
  readonly credentials?: ChannelCredentials;
  /** Extra grpc-js channel options, merged over DEFAULT_CHANNEL_OPTIONS. */
  readonly channelOptions?: Partial<ChannelOptions>;
}

export type GrpcClient<S extends DescService> = Client<S> & {
  /** Releases this client's share of the channel (closed when no client uses it). */
  close(): void;
  /** Resolves once the channel is connected; rejects after `deadlineMs` ms. */
  waitForReady(deadlineMs: number): Promise<void>;
  /**
   * Whether the channel can carry a call now: true at once when connected; otherwise starts
   * connecting and answers true when it connects within `ms`, false when the connection fails
   * or is still pending by then. grpc-js has no connect timeout of its own: a call to an
   * upstream that accepts TCP and never answers would wait for the call's deadline, or forever.
   */
  connectedWithin(ms: number): Promise<boolean>;
  /**
   * A bidi call at `path` whose messages pass as bytes, neither parsed nor re-serialized (a proxy
   * of frames: gateway/session-door.ts). Always over the network (no in-process hop for bidi).
   */
  rawBidi(path: string, headers?: HeadersInit): ClientDuplexStream<Uint8Array, Buffer>;
};

/**
 * Keep-alive: ping every 30 s, drop the connection when a ping is unanswered for 10 s, also
 * while idle (our servers are grpc-js, which accepts such pings; against grpc-go servers raise
 * the interval above their 5-minute minimum). Messages up to MESH_MAX_MESSAGE_BYTES.
 */
export const DEFAULT_CHANNEL_OPTIONS: Partial<ChannelOptions> = {
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.max_receive_message_length": MESH_MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MESH_MAX_MESSAGE_BYTES,
  "grpc.initial_reconnect_backoff_ms": 250,
  "grpc.max_reconnect_backoff_ms": 5_000,
};

interface SharedChannel {
  readonly channel: Channel;
  refs: number;
}
const channels = new Map<string, SharedChannel>();
const credentialIds = new WeakMap<ChannelCredentials, number>();
let nextCredentialId = 1;

function acquireChannel(target: string, creds: ChannelCredentials, options: Partial<ChannelOptions>): [string, Channel] {
  let credId = credentialIds.get(creds);
  if (credId === undefined) {
    credId = nextCredentialId++;
    credentialIds.set(creds, credId);
  }
  const key = `${target}|${credId}|${JSON.stringify(options)}`;
  let shared = channels.get(key);
  if (!shared) {
    shared = { channel: new Channel(target, creds, options), refs: 0 };
    channels.set(key, shared);
  }
  shared.refs++;
  return [key, shared.channel];
}

function releaseChannel(key: string): void {
  const shared = channels.get(key);
  if (!shared) return;
  if (--shared.refs <= 0) {
    channels.delete(key);
    shared.channel.close();
  }
}

export function createGrpcClient<S extends DescService>(
  desc: S,
  target: string,
  options: GrpcClientOptions = {},
): GrpcClient<S> {
  const creds = options.credentials ?? insecure;
  const channelOptions = { ...DEFAULT_CHANNEL_OPTIONS, ...options.channelOptions };
  const [key, channel] = acquireChannel(target, creds, channelOptions);
  const grpc = new GrpcJsClient(target, creds, { channelOverride: channel });
  let closed = false;

  const out: Record<string, unknown> = {};
  for (const method of desc.methods) {
    out[method.localName] = methodFn(grpc, target, method, options.defaultTimeoutMs);
  }
  out["close"] = () => {
    if (closed) return;
    closed = true;
    releaseChannel(key);
  };
  out["waitForReady"] = (deadlineMs: number) =>
    new Promise<void>((resolve, reject) => {
      if (localServerAt(target)) return resolve();
      grpc.waitForReady(Date.now() + deadlineMs, (err) => {
        if (err) reject(new ConnectError(`${target} not ready after ${deadlineMs} ms: ${err.message}`, Code.Unavailable));
        else resolve();
      });
    });
  out["connectedWithin"] = (ms: number) =>
    new Promise<boolean>((resolve) => {
      if (localServerAt(target)) return resolve(true);
      const deadline = Date.now() + ms;
      const check = (): void => {
        const state = channel.getConnectivityState(true);
        if (state === connectivityState.READY) return resolve(true);
        if (state === connectivityState.TRANSIENT_FAILURE || state === connectivityState.SHUTDOWN) return resolve(false);
        channel.watchConnectivityState(state, deadline, (err) => (err ? resolve(false) : check()));
      };
      check();
    });
  out["rawBidi"] = (path: string, headers?: HeadersInit) => grpc.makeBidiStreamRequest(path, asBuffer, asIs, headersToMetadata(headers), {});
  return out as GrpcClient<S>;
}

const asBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const asIs = (b: Buffer): Buffer => b;

const insecure = grpcCredentials.createInsecure();

/**
 * One method of the client. Unary and server-streaming calls to a server of this same process
 * take the in-process hop (./in-process.ts), decided per call: that server may start or stop
 * listening at any time.
 */
function methodFn(grpc: GrpcJsClient, target: string, method: DescMethod, defaultTimeoutMs: number | undefined): unknown {
  const path = grpcPath(method);
  const serialize = serializerFor(method.input);
  const deserialize = deserializerFor(method.output);
  const prepare = (opts: GrpcCallOptions_ | undefined): [Metadata, GrpcCallOptions] => {
    const metadata = headersToMetadata(opts?.headers);
    const timeoutMs = opts?.timeoutMs ?? defaultTimeoutMs;
    const callOptions: GrpcCallOptions = {};
    if (timeoutMs !== undefined && timeoutMs > 0) callOptions.deadline = Date.now() + timeoutMs;
    return [metadata, callOptions];
  };

  switch (method.methodKind) {
    case "unary":
      return (request: AnyInit, opts?: GrpcCallOptions_): Promise<AnyMessage> => {
        const [metadata, callOptions] = prepare(opts);
        const server = localServerAt(target);
        const local = server?.lookup(path);
        if (local) {
          if (opts?.signal?.aborted) return Promise.reject(abortedError(opts.signal));
          return callUnary({ server: server!, local, request, metadata, deadlineAt: deadlineOf(callOptions), opts });
        }
        return new Promise<AnyMessage>((resolve, reject) => {
          if (opts?.signal?.aborted) return reject(abortedError(opts.signal));
          const call = grpc.makeUnaryRequest(path, serialize, deserialize, request, metadata, callOptions, (err, res) => {
            detach();
            if (err) reject(fromServiceError(err));
            else resolve(res as AnyMessage);
          });
          const detach = linkSignal(opts?.signal, () => call.cancel());
          observe(call, opts);
        });
      };
    case "server_streaming":
      return (request: AnyInit, opts?: GrpcCallOptions_): AsyncIterable<AnyMessage> => ({
        [Symbol.asyncIterator]() {
          const [metadata, callOptions] = prepare(opts);
          const server = localServerAt(target);
          const local = server?.lookup(path);
          if (local) {
            if (opts?.signal?.aborted) return failing(abortedError(opts.signal));
            return callServerStream({ server: server!, local, request, metadata, deadlineAt: deadlineOf(callOptions), opts });
          }
          return readResponses(() => grpc.makeServerStreamRequest(path, serialize, deserialize, request, metadata, callOptions), opts);
        },
      });
    case "client_streaming":
      return (requests: AsyncIterable<AnyInit>, opts?: GrpcCallOptions_): Promise<AnyMessage> => {
        const [metadata, callOptions] = prepare(opts);
        return new Promise<AnyMessage>((resolve, reject) => {
          if (opts?.signal?.aborted) return reject(abortedError(opts.signal));
          let pumpError: unknown;
          const call = grpc.makeClientStreamRequest(path, serialize, deserialize, metadata, callOptions, (err, res) => {
            detach();
            if (pumpError !== undefined) reject(ConnectError.from(pumpError));
            else if (err) reject(fromServiceError(err));
            else resolve(res as AnyMessage);
          });
          const detach = linkSignal(opts?.signal, () => call.cancel());
          observe(call, opts);
          pump(requests, call).catch((e: unknown) => {
            pumpError = e;
            call.cancel();
          });
        });
      };
    case "bidi_streaming":
      return (requests: AsyncIterable<AnyInit>, opts?: GrpcCallOptions_): AsyncIterable<AnyMessage> => ({
        [Symbol.asyncIterator]() {
          const [metadata, callOptions] = prepare(opts);
          return readResponses(() => {
            const call = grpc.makeBidiStreamRequest(path, serialize, deserialize, metadata, callOptions);
            pump(requests, call).catch((e: unknown) => {
              call.emit("error", ConnectError.from(e));
              call.cancel();
            });
            return call;
          }, opts);
        },
      });
  }
}

/** Writes every request, awaiting 'drain' when the stream's buffer is full, then half-closes. */
async function pump(requests: AsyncIterable<AnyInit>, call: ClientWritableStream<AnyInit> | ClientDuplexStream<AnyInit, AnyMessage>): Promise<void> {
  for await (const req of requests) {
    if (!call.write(req)) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => {
          call.off("error", onError);
          resolve();
        };
        const onError = (e: unknown): void => {
          call.off("drain", onDrain);
          reject(e);
        };
        call.once("drain", onDrain);
        call.once("error", onError);
      });
    }
  }
  call.end();
}

/** Async iterator over a response stream; errors become ConnectError; early exit cancels the call. */
function readResponses(
  start: () => ClientReadableStream<AnyMessage> | ClientDuplexStream<AnyInit, AnyMessage>,
  opts: GrpcCallOptions_ | undefined,
): AsyncIterator<AnyMessage> {
  async function* gen(): AsyncGenerator<AnyMessage> {
    if (opts?.signal?.aborted) throw abortedError(opts.signal);
    const call = start();
    observe(call, opts);
    const detach = linkSignal(opts?.signal, () => call.cancel());
    let finished = false;
    try {
      for await (const msg of call as AsyncIterable<AnyMessage>) yield msg;
      finished = true;
    } catch (e) {
      finished = true;
      throw isServiceError(e) ? fromServiceError(e) : ConnectError.from(e);
    } finally {
      detach();
      if (!finished) call.cancel();
    }
  }
  return gen();
}

function observe(
  call: { on(event: "metadata", l: (m: Metadata) => void): unknown; on(event: "status", l: (s: StatusObject) => void): unknown },
  opts: GrpcCallOptions_ | undefined,
): void {
  const onHeader = opts?.onHeader;
  const onTrailer = opts?.onTrailer;
  if (onHeader) call.on("metadata", (md) => onHeader(metadataToHeaders(md)));
  if (onTrailer) call.on("status", (s) => onTrailer(metadataToHeaders(s.metadata)));
}

function deadlineOf(callOptions: GrpcCallOptions): number {
  return typeof callOptions.deadline === "number" ? callOptions.deadline : Infinity;
}

/** An iterator whose first read fails with `error`. */
function failing(error: unknown): AsyncIterator<AnyMessage> {
  return { next: () => Promise.reject(error) };
}

function linkSignal(signal: AbortSignal | undefined, cancel: () => void): () => void {
  if (!signal) return () => {};
  const onAbort = (): void => cancel();
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

function abortedError(signal: AbortSignal): ConnectError {
  return new ConnectError("the operation was aborted", Code.Canceled, undefined, undefined, signal.reason);
}

function isServiceError(e: unknown): e is ServiceError {
  return e instanceof Error && typeof (e as Partial<ServiceError>).code === "number" && "details" in e;
}

/** A call's final grpc-js status -> ConnectError (undefined for OK). */
export function fromStatus(s: StatusObject): ConnectError | undefined {
  if (s.code === 0) return undefined;
  return new ConnectError(s.details, s.code as number as Code, metadataToHeaders(s.metadata));
}

/** grpc-js ServiceError -> ConnectError: same numeric code, the server's message, its trailers. */
export function fromServiceError(e: ServiceError): ConnectError {
  if (e instanceof ConnectError) return e;
  const metadata = e.metadata ? metadataToHeaders(e.metadata) : undefined;
  return new ConnectError(e.details, e.code as number as Code, metadata, undefined, e);
}
