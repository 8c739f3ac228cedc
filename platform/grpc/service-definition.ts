/**
 * Runs transport-neutral Connect service implementations (`ServiceImpl<typeof Svc>`) on
 * @grpc/grpc-js, with protobuf-es v2 generated descriptors.
 *
 * - `grpcServiceDefinition(desc)`: the grpc-js ServiceDefinition (path `/pkg.Service/Method`,
 *   stream flags from methodKind, protobuf-es `toBinary`/`fromBinary` as codec).
 * - `toGrpcHandlers(desc, impl, options)`: grpc-js handlers that build a Connect HandlerContext
 *   per call (signal aborted on cancel/deadline/shutdown, request headers from metadata,
 *   timeoutMs from the deadline, ctx.values seeded with the call logger and request id), map
 *   thrown errors with `toConnectError`, respect backpressure on streamed responses, and
 *   optionally count calls on prom-client metrics.
 *
 * Hot path: per-method constants are computed once; per call the context is one object whose
 * Headers, url, logger and AbortSignal (with its listeners/timer) are only built when read.
 */
import { once, type EventEmitter } from "node:events";
import type { Readable } from "node:stream";
import {
  create,
  fromBinary,
  isMessage,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescService,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  type ContextValues,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import { getAbortSignalReason } from "@connectrpc/connect/protocol";
import type {
  Deadline,
  Metadata,
  MethodDefinition,
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
  ServiceDefinition,
  StatusObject,
  UntypedHandleCall,
  UntypedServiceImplementation,
  sendUnaryData,
  status as GrpcStatus,
} from "@grpc/grpc-js";
import type { Logger } from "pino";
import { childForCall, REQUEST_ID_HEADER, requestIdFromValue } from "../logging.js";
import type { Metrics } from "../metrics.js";
import { methodMetrics, type MethodMetrics } from "./call-metrics.js";
import { callLogKey, requestIdKey } from "./context.js";
import { hasEntries, headersToMetadata, metadataToHeaders, metadataValue } from "./metadata.js";
import { toConnectError } from "./status.js";

type AnyMessage = MessageShape<DescMessage>;
type AnyInit = MessageInitShape<DescMessage>;

/** What seeds `ctx.values` for one call; interceptors put e.g. the caller identity in. */
export interface CallContextInit {
  readonly service: DescService;
  readonly method: DescMethod;
  readonly requestHeader: Headers;
  /** One request header's value without building `requestHeader` (cheap on the hot path); null when absent. */
  header(name: string): string | null;
  readonly peer: string;
}

export interface GrpcHandlerOptions {
  /** Parent logger; each call gets `childForCall(log, { service, method, requestId })`. */
  readonly log: Logger;
  /** Linked into every call's ctx.signal (abort it to cancel all running handlers). */
  readonly shutdownSignal?: AbortSignal;
  /** Initial ctx.values for a call; the adapter adds callLogKey and requestIdKey. */
  readonly contextValues?: (init: CallContextInit) => ContextValues;
  /**
   * When given, every call that reaches a handler (including UNIMPLEMENTED methods) is counted
   * and timed here: started, handled by code (CANCELLED when the client cancelled or the deadline
   * passed), latency. Counting in the handler costs far less than a grpc-js interceptor.
   */
  readonly metrics?: Metrics;
}

/** A service implementation of any service, as `toGrpcHandlers` accepts it. */
export type AnyServiceImpl = Partial<Record<string, (...args: never[]) => unknown>>;

/**
 * A message already in protobuf binary: written as these bytes, not serialized again. For one
 * message sent on many streams (a chat event to every member's Session): made once, sent N times.
 * Only where the stream goes over the network (bidi calls have no in-process hop).
 */
export class Serialized {
  constructor(readonly bytes: Uint8Array) {}
}

/** protobuf-es codec for one message type, in grpc-js's Buffer form; a Serialized value passes as it is. */
export function serializerFor(schema: DescMessage): (value: AnyInit) => Buffer {
  return (value) => {
    if (value instanceof Serialized) return Buffer.from(value.bytes.buffer, value.bytes.byteOffset, value.bytes.byteLength);
    const msg = isMessage(value, schema) ? value : create(schema, value);
    const bytes = toBinary(schema, msg);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

export function deserializerFor(schema: DescMessage): (bytes: Buffer) => AnyMessage {
  return (bytes) => fromBinary(schema, bytes);
}

/** `/pkg.Service/Method` */
export function grpcPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

const definitions = new WeakMap<DescService, ServiceDefinition>();

/** The grpc-js ServiceDefinition of a protobuf-es service, keyed by method localName. */
export function grpcServiceDefinition(desc: DescService): ServiceDefinition {
  let def = definitions.get(desc);
  if (def) return def;
  const out: Record<string, MethodDefinition<AnyInit, AnyInit>> = {};
  for (const method of desc.methods) {
    out[method.localName] = {
      path: grpcPath(method),
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: serializerFor(method.input),
      requestDeserialize: deserializerFor(method.input),
      responseSerialize: serializerFor(method.output),
      responseDeserialize: deserializerFor(method.output),
      originalName: method.name,
    };
  }
  def = out;
  definitions.set(desc, def);
  return def;
}

/**
 * grpc-js handlers for `impl`, keyed like `grpcServiceDefinition(desc)`. Methods missing from
 * `impl` answer UNIMPLEMENTED "pkg.Service.Method is not implemented".
 */
export function toGrpcHandlers<S extends DescService>(
  desc: S,
  impl: Partial<ServiceImpl<S>>,
  options: GrpcHandlerOptions,
): UntypedServiceImplementation {
  const handlers: UntypedServiceImplementation = {};
  const methods = impl as unknown as AnyServiceImpl;
  for (const method of desc.methods) {
    const fn = methods[method.localName];
    const bound = typeof fn === "function" ? (fn.bind(impl) as (...args: unknown[]) => unknown) : undefined;
    handlers[method.localName] = handlerFor(desc, method, bound, options);
  }
  return handlers;
}

type SurfaceCall =
  | ServerUnaryCall<AnyMessage, AnyInit>
  | ServerReadableStream<AnyMessage, AnyInit>
  | ServerWritableStream<AnyMessage, AnyInit>
  | ServerDuplexStream<AnyMessage, AnyInit>;

/** Per-method constants, computed once in `toGrpcHandlers` (not per call). */
interface MethodInfo {
  readonly service: DescService;
  readonly method: DescMethod;
  readonly path: string;
  readonly options: GrpcHandlerOptions;
  readonly metrics: MethodMetrics | undefined;
}

function handlerFor(
  service: DescService,
  method: DescMethod,
  fn: ((...args: unknown[]) => unknown) | undefined,
  options: GrpcHandlerOptions,
): UntypedHandleCall {
  const info: MethodInfo = {
    service,
    method,
    path: grpcPath(method),
    options,
    metrics: options.metrics ? methodMetrics(options.metrics, service.typeName, method) : undefined,
  };
  const unimplemented: Partial<StatusObject> = {
    code: grpcStatus(Code.Unimplemented),
    details: `${service.typeName}.${method.name} is not implemented`,
  };
  const m = info.metrics;

  switch (method.methodKind) {
    case "unary":
      return (call: ServerUnaryCall<AnyMessage, AnyInit>, callback: sendUnaryData<AnyInit>) => {
        if (!fn) return unimplementedUnary(m, callback, unimplemented);
        void respondUnary(call, callback, new CallContext(info, call), fn, call.request);
      };
    case "client_streaming":
      return (call: ServerReadableStream<AnyMessage, AnyInit>, callback: sendUnaryData<AnyInit>) => {
        if (!fn) return unimplementedUnary(m, callback, unimplemented);
        void respondUnary(call, callback, new CallContext(info, call), fn, readRequests(call));
      };
    case "server_streaming":
      return (call: ServerWritableStream<AnyMessage, AnyInit>) => {
        if (!fn) return unimplementedStream(m, call, unimplemented);
        const ctx = new CallContext(info, call);
        void respondStream(call, ctx, () => fn(call.request, ctx) as AsyncIterable<AnyInit>);
      };
    case "bidi_streaming":
      return (call: ServerDuplexStream<AnyMessage, AnyInit>) => {
        if (!fn) return unimplementedStream(m, call, unimplemented);
        const ctx = new CallContext(info, call);
        const requests = readRequests(call);
        void respondStream(call, ctx, () => fn(requests, ctx) as AsyncIterable<AnyInit>);
      };
  }
}

function unimplementedUnary(m: MethodMetrics | undefined, callback: sendUnaryData<AnyInit>, status: Partial<StatusObject>): void {
  if (m) m.handled(status.code!, m.started());
  callback(status);
}

function unimplementedStream(
  m: MethodMetrics | undefined,
  call: ServerWritableStream<AnyMessage, AnyInit> | ServerDuplexStream<AnyMessage, AnyInit>,
  status: Partial<StatusObject>,
): void {
  if (m) m.handled(status.code!, m.started());
  endWithStatus(call, status);
}

/** Abort reason once a call has completed (a shared value: no DOMException per call). */
const CALL_COMPLETED = new ConnectError("the call has completed", Code.Canceled);
const GRPC_CANCELLED = 1;

const cancelledByClient = (): ConnectError => new ConnectError("the call was cancelled by the client", Code.Canceled);
const deadlineExceeded = (): ConnectError => new ConnectError("the operation timed out", Code.DeadlineExceeded);

/**
 * The Connect HandlerContext of one call, built for the hot path: everything a handler may never
 * read is created on first access (request Headers from metadata, response header/trailer
 * Headers, url, the child logger, and ctx.signal with its AbortController, cancel listener,
 * shutdown listener and deadline timer). Semantics match `createHandlerContext` + the previous
 * eager adapter: the signal aborts on client cancel, deadline and shutdown (first wins), and at the
 * latest when the call completes (reason CALL_COMPLETED); a signal first read after any of these
 * is returned already aborted with the reason it would have had.
 */
class CallContext implements HandlerContext {
  readonly protocolName = "grpc";
  readonly requestMethod = "POST";
  readonly values: ContextValues;
  readonly requestId: string;
  private readonly info: MethodInfo;
  private readonly call: SurfaceCall;
  /** Absolute deadline in ms since epoch; Infinity without a deadline. */
  private readonly deadlineAt: number;
  /** performance.now() at call start when metrics are on (else 0). */
  private readonly startedAt: number;
  private completed = false;
  /** Set once the call completed (or when the signal is created): the reason ctx.signal has. */
  private settledReason: unknown = undefined;
  private controller: AbortController | undefined = undefined;
  private unlink: (() => void) | undefined = undefined;
  private log: Logger | undefined = undefined;
  private _requestHeader: Headers | undefined = undefined;
  private _responseHeader: Headers | undefined = undefined;
  private _responseTrailer: Headers | undefined = undefined;
  private _url: string | undefined = undefined;
  private _timeoutMs: (() => number | undefined) | undefined = undefined;
  private _getLog: (() => Logger) | undefined = undefined;

  constructor(info: MethodInfo, call: SurfaceCall) {
    this.info = info;
    this.call = call;
    this.startedAt = info.metrics ? info.metrics.started() : 0;
    this.deadlineAt = deadlineMs(call.getDeadline());
    this.requestId = requestIdFromValue(metadataValue(call.metadata, REQUEST_ID_HEADER));
    const init = info.options.contextValues;
    const values = init ? init(this.contextInit()) : createContextValues();
    values.set(callLogKey, this.getLog);
    values.set(requestIdKey, this.requestId);
    this.values = values;
  }

  get service(): DescService {
    return this.info.service;
  }
  get method(): DescMethod {
    return this.info.method;
  }
  get url(): string {
    return (this._url ??= `http://${this.call.getHost()}${this.info.path}`);
  }
  get requestHeader(): Headers {
    return (this._requestHeader ??= metadataToHeaders(this.call.metadata));
  }
  get responseHeader(): Headers {
    return (this._responseHeader ??= new Headers());
  }
  get responseTrailer(): Headers {
    return (this._responseTrailer ??= new Headers());
  }
  /** Remaining time until the deadline (a function value, like createHandlerContext's). */
  get timeoutMs(): () => number | undefined {
    return (this._timeoutMs ??= Number.isFinite(this.deadlineAt)
      ? () => this.deadlineAt - Date.now()
      : () => undefined);
  }
  get signal(): AbortSignal {
    return (this.controller ??= this.createController()).signal;
  }
  /** The call's child logger, built on first use (creating one per call costs more than most handlers). */
  get getLog(): () => Logger {
    return (this._getLog ??= () =>
      (this.log ??= childForCall(this.info.options.log, {
        service: this.info.service.typeName,
        method: this.info.method.name,
        requestId: this.requestId,
      })));
  }

  /** Response header/trailer as grpc Metadata, or undefined when nothing was set. */
  responseHeaderMetadata(): Metadata | undefined {
    const h = this._responseHeader;
    return h && hasEntries(h) ? headersToMetadata(h) : undefined;
  }
  responseTrailerMetadata(): Metadata | undefined {
    const h = this._responseTrailer;
    return h && hasEntries(h) ? headersToMetadata(h) : undefined;
  }

  /**
   * The call is over: release listeners and timers, abort ctx.signal (Connect semantics: the
   * signal fires at the end) and record metrics with the status code sent (CANCELLED when the
   * client cancelled or the deadline passed first).
   */
  finish(code: number): void {
    if (this.completed) return;
    this.completed = true;
    if (this.controller) {
      this.abortWith(CALL_COMPLETED);
    } else {
      this.settledReason = this.pendingReason() ?? CALL_COMPLETED;
    }
    const m = this.info.metrics;
    if (m) m.handled(this.call.cancelled ? GRPC_CANCELLED : code, this.startedAt);
  }

  private contextInit(): CallContextInit {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const ctx = this;
    return {
      service: this.info.service,
      method: this.info.method,
      get requestHeader() {
        return ctx.requestHeader;
      },
      header: (name) => metadataValue(ctx.call.metadata, name),
      get peer() {
        return ctx.call.getPeer();
      },
    };
  }

  /** Why the signal would be aborted by now (deadline, shutdown, cancel; in createHandlerContext's order). */
  private pendingReason(): unknown {
    if (this.deadlineAt <= Date.now()) return deadlineExceeded();
    const shutdown = this.info.options.shutdownSignal;
    if (shutdown?.aborted) return getAbortSignalReason(shutdown);
    if (this.call.cancelled) return cancelledByClient();
    return undefined;
  }

  private createController(): AbortController {
    const controller = new AbortController();
    this.controller = controller;
    const reason = this.completed ? this.settledReason : this.pendingReason();
    if (reason !== undefined) {
      controller.abort(reason);
      return controller;
    }
    const events = this.call as EventEmitter;
    const onCancel = (): void => this.abortWith(cancelledByClient());
    events.on("cancelled", onCancel);
    const shutdown = this.info.options.shutdownSignal;
    const onShutdown = (): void => this.abortWith(getAbortSignalReason(shutdown!));
    shutdown?.addEventListener("abort", onShutdown);
    const timer = Number.isFinite(this.deadlineAt)
      ? setTimeout(() => this.abortWith(deadlineExceeded()), this.deadlineAt - Date.now())
      : undefined;
    this.unlink = () => {
      events.removeListener("cancelled", onCancel);
      shutdown?.removeEventListener("abort", onShutdown);
      if (timer !== undefined) clearTimeout(timer);
    };
    return controller;
  }

  private abortWith(reason: unknown): void {
    const unlink = this.unlink;
    if (unlink) {
      this.unlink = undefined;
      unlink();
    }
    const controller = this.controller!;
    if (!controller.signal.aborted) controller.abort(reason);
  }
}

function deadlineMs(deadline: Deadline): number {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isNaN(at) ? Infinity : at;
}

async function respondUnary(
  call: ServerUnaryCall<AnyMessage, AnyInit> | ServerReadableStream<AnyMessage, AnyInit>,
  callback: sendUnaryData<AnyInit>,
  ctx: CallContext,
  fn: (...args: unknown[]) => unknown,
  request: unknown,
): Promise<void> {
  let res: AnyInit;
  try {
    res = (await fn(request, ctx)) as AnyInit;
  } catch (e) {
    const status = errorStatus(e, ctx);
    ctx.finish(status.code ?? Code.Unknown);
    if (!call.cancelled) callback(status);
    return;
  }
  const header = ctx.responseHeaderMetadata();
  if (header) call.sendMetadata(header);
  const trailer = ctx.responseTrailerMetadata();
  ctx.finish(0);
  callback(null, res, trailer);
}

async function respondStream(
  call: ServerWritableStream<AnyMessage, AnyInit> | ServerDuplexStream<AnyMessage, AnyInit>,
  ctx: CallContext,
  run: () => AsyncIterable<AnyInit>,
): Promise<void> {
  let headerSent = false;
  const sendHeader = (): void => {
    if (headerSent) return;
    headerSent = true;
    const header = ctx.responseHeaderMetadata();
    if (header) call.sendMetadata(header);
  };
  try {
    for await (const out of run()) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      sendHeader();
      if (!call.write(out)) await once(call, "drain", { signal: ctx.signal });
    }
    sendHeader();
    const trailer = headersToMetadata(ctx.responseTrailer);
    ctx.finish(0);
    call.end(trailer);
  } catch (e) {
    const status = errorStatus(ctx.signal.aborted && isAbortError(e) ? ctx.signal.reason : e, ctx);
    ctx.finish(status.code ?? Code.Unknown);
    if (!call.cancelled) endWithStatus(call, status);
  }
}

function endWithStatus(
  call: ServerWritableStream<AnyMessage, AnyInit> | ServerDuplexStream<AnyMessage, AnyInit>,
  status: Partial<StatusObject>,
): void {
  // grpc-js stream calls turn an 'error' event into the final status and end the call.
  call.emit("error", status);
}

function errorStatus(e: unknown, ctx: CallContext): Partial<StatusObject> {
  const log = ctx.getLog();
  const err = toConnectError(e, log);
  if (err.code !== Code.Internal && err.code !== Code.Unknown) {
    log.debug({ code: err.code, msg: err.rawMessage }, "rpc failed");
  }
  const metadata = headersToMetadata(ctx.responseTrailer);
  headersToMetadata(err.metadata, metadata);
  return { code: grpcStatus(err.code), details: err.rawMessage, metadata };
}

/** Connect and gRPC share the numeric code space. */
export function grpcStatus(code: Code): GrpcStatus {
  return code as number as GrpcStatus;
}

function isAbortError(e: unknown): boolean {
  return e instanceof Error && e.name === "AbortError";
}

/**
 * The request stream as an AsyncIterable (reads are paced by the readable's own buffer).
 * Breaking out of the loop early does not destroy a duplex call's writable side.
 */
function readRequests(call: ServerReadableStream<AnyMessage, AnyInit> | ServerDuplexStream<AnyMessage, AnyInit>): AsyncIterable<AnyMessage> {
  const readable = call as unknown as Readable;
  return {
    [Symbol.asyncIterator]: () => readable.iterator({ destroyOnReturn: false }) as AsyncIterator<AnyMessage>,
  };
}
