/**
 * Runs transport-neutral Connect service implementations (`ServiceImpl<typeof Svc>`) on
 * @grpc/grpc-js, with protobuf-es v2 generated descriptors.
 *
 * - `grpcServiceDefinition(desc)`: the grpc-js ServiceDefinition (path `/pkg.Service/Method`,
 *   stream flags from methodKind, protobuf-es `toBinary`/`fromBinary` as codec).
 * - `toGrpcHandlers(desc, impl, options)`: grpc-js handlers that build a Connect HandlerContext
 *   per call (signal aborted on cancel/deadline/shutdown, request headers from metadata,
 *   timeoutMs from the deadline, ctx.values seeded with the call logger and request id), map
 *   thrown errors with `toConnectError`, and respect backpressure on streamed responses.
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
  createHandlerContext,
  type ContextValues,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import type {
  Deadline,
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
import { childForCall, requestIdFrom } from "../logging.js";
import { callLogKey, requestIdKey } from "./context.js";
import { hasEntries, headersToMetadata, metadataToHeaders } from "./metadata.js";
import { toConnectError } from "./status.js";

type AnyMessage = MessageShape<DescMessage>;
type AnyInit = MessageInitShape<DescMessage>;

/** What seeds `ctx.values` for one call; interceptors put e.g. the caller identity in. */
export interface CallContextInit {
  readonly service: DescService;
  readonly method: DescMethod;
  readonly requestHeader: Headers;
  readonly peer: string;
}

export interface GrpcHandlerOptions {
  /** Parent logger; each call gets `childForCall(log, { service, method, requestId })`. */
  readonly log: Logger;
  /** Linked into every call's ctx.signal (abort it to cancel all running handlers). */
  readonly shutdownSignal?: AbortSignal;
  /** Initial ctx.values for a call; the adapter adds callLogKey and requestIdKey. */
  readonly contextValues?: (init: CallContextInit) => ContextValues;
}

/** A service implementation of any service, as `toGrpcHandlers` accepts it. */
export type AnyServiceImpl = Partial<Record<string, (...args: never[]) => unknown>>;

/** protobuf-es codec for one message type, in grpc-js's Buffer form. */
export function serializerFor(schema: DescMessage): (value: AnyInit) => Buffer {
  return (value) => {
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

interface CallScope {
  readonly ctx: HandlerContext;
  readonly log: Logger;
  /** Releases listeners and timers; aborts ctx.signal (Connect semantics: signal fires at the end). */
  done(): void;
}

function handlerFor(
  service: DescService,
  method: DescMethod,
  fn: ((...args: unknown[]) => unknown) | undefined,
  options: GrpcHandlerOptions,
): UntypedHandleCall {
  const unimplemented = `${service.typeName}.${method.name} is not implemented`;
  const begin = (call: SurfaceCall): CallScope => beginCall(service, method, call, options);

  switch (method.methodKind) {
    case "unary":
      return (call: ServerUnaryCall<AnyMessage, AnyInit>, callback: sendUnaryData<AnyInit>) => {
        if (!fn) return callback({ code: grpcStatus(Code.Unimplemented), details: unimplemented });
        const scope = begin(call);
        respondUnary(call, callback, scope, async () => (await fn(call.request, scope.ctx)) as AnyInit);
      };
    case "client_streaming":
      return (call: ServerReadableStream<AnyMessage, AnyInit>, callback: sendUnaryData<AnyInit>) => {
        if (!fn) return callback({ code: grpcStatus(Code.Unimplemented), details: unimplemented });
        const scope = begin(call);
        const requests = readRequests(call);
        respondUnary(call, callback, scope, async () => (await fn(requests, scope.ctx)) as AnyInit);
      };
    case "server_streaming":
      return (call: ServerWritableStream<AnyMessage, AnyInit>) => {
        if (!fn) return endWithStatus(call, { code: grpcStatus(Code.Unimplemented), details: unimplemented });
        const scope = begin(call);
        void respondStream(call, scope, () => fn(call.request, scope.ctx) as AsyncIterable<AnyInit>);
      };
    case "bidi_streaming":
      return (call: ServerDuplexStream<AnyMessage, AnyInit>) => {
        if (!fn) return endWithStatus(call, { code: grpcStatus(Code.Unimplemented), details: unimplemented });
        const scope = begin(call);
        const requests = readRequests(call);
        void respondStream(call, scope, () => fn(requests, scope.ctx) as AsyncIterable<AnyInit>);
      };
  }
}

function beginCall(service: DescService, method: DescMethod, call: SurfaceCall, options: GrpcHandlerOptions): CallScope {
  const requestHeader = metadataToHeaders(call.metadata);
  const requestId = requestIdFrom(requestHeader);
  // The child logger is built on first use: creating one per call costs more than most handlers.
  let log: Logger | undefined;
  const getLog = (): Logger =>
    (log ??= childForCall(options.log, { service: service.typeName, method: method.name, requestId }));
  const values =
    options.contextValues?.({ service, method, requestHeader, peer: call.getPeer() }) ?? createContextValues();
  values.set(callLogKey, getLog);
  values.set(requestIdKey, requestId);

  const ctx = createHandlerContext({
    service,
    method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: `http://${call.getHost()}${grpcPath(method)}`,
    timeoutMs: timeoutFrom(call.getDeadline()),
    ...(options.shutdownSignal ? { shutdownSignal: options.shutdownSignal } : {}),
    requestHeader,
    contextValues: values,
  });
  const events = call as EventEmitter;
  const onCancel = (): void => ctx.abort(new ConnectError("the call was cancelled by the client", Code.Canceled));
  events.on("cancelled", onCancel);
  if (call.cancelled) onCancel();
  return {
    ctx,
    get log() {
      return getLog();
    },
    done() {
      events.removeListener("cancelled", onCancel);
      ctx.abort(CALL_COMPLETED);
    },
  };
}

/** Abort reason once a call has completed (a shared value: no DOMException per call). */
const CALL_COMPLETED = new ConnectError("the call has completed", Code.Canceled);

function timeoutFrom(deadline: Deadline): number | undefined {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return undefined;
  return Math.max(0, at - Date.now());
}

function respondUnary(
  call: ServerUnaryCall<AnyMessage, AnyInit> | ServerReadableStream<AnyMessage, AnyInit>,
  callback: sendUnaryData<AnyInit>,
  scope: CallScope,
  run: () => Promise<AnyInit>,
): void {
  run().then(
    (res) => {
      if (hasEntries(scope.ctx.responseHeader)) call.sendMetadata(headersToMetadata(scope.ctx.responseHeader));
      const trailer = hasEntries(scope.ctx.responseTrailer) ? headersToMetadata(scope.ctx.responseTrailer) : undefined;
      scope.done();
      callback(null, res, trailer);
    },
    (e: unknown) => {
      const status = errorStatus(e, scope);
      scope.done();
      if (!call.cancelled) callback(status);
    },
  );
}

async function respondStream(
  call: ServerWritableStream<AnyMessage, AnyInit> | ServerDuplexStream<AnyMessage, AnyInit>,
  scope: CallScope,
  run: () => AsyncIterable<AnyInit>,
): Promise<void> {
  const { ctx } = scope;
  let headerSent = false;
  const sendHeader = (): void => {
    if (headerSent) return;
    headerSent = true;
    if (hasEntries(ctx.responseHeader)) call.sendMetadata(headersToMetadata(ctx.responseHeader));
  };
  try {
    for await (const out of run()) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      sendHeader();
      if (!call.write(out)) await once(call, "drain", { signal: ctx.signal });
    }
    sendHeader();
    const trailer = headersToMetadata(ctx.responseTrailer);
    scope.done();
    call.end(trailer);
  } catch (e) {
    const status = errorStatus(ctx.signal.aborted && isAbortError(e) ? ctx.signal.reason : e, scope);
    scope.done();
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

function errorStatus(e: unknown, scope: CallScope): Partial<StatusObject> {
  const err = toConnectError(e, scope.log);
  if (err.code !== Code.Internal && err.code !== Code.Unknown) {
    scope.log.debug({ code: err.code, msg: err.rawMessage }, "rpc failed");
  }
  const metadata = headersToMetadata(scope.ctx.responseTrailer);
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
