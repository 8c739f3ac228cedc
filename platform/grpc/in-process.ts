/**
 * The in-process hop. When a gRPC call's target is a server of this very process (the embedded
 * mesh: the gateway and every service share one process), the call is handed to that server's
 * handlers directly instead of crossing grpc-js, HTTP/2 framing and a loopback socket twice.
 * Why: on the embedded mesh that machinery cost about a quarter of the CPU of every hop
 * (bench/README.md, "in-process hop").
 *
 * What does not change: the handlers are the same grpc-js handlers (service-definition.ts), so
 * the identity assertion is verified, deadlines and cancellation reach ctx.signal, calls are
 * counted in grpc_server_* metrics and errors map the same way. Messages cross as deep copies:
 * neither side ever holds the other's objects, as over the network. MESH_MAX_MESSAGE_BYTES is
 * not applied: it guards a process against a peer's frames, and here both ends are this
 * process's own code behind the edge's far smaller limits. A streamed response is buffered up to STREAM_HIGH_WATER
 * messages; beyond that the handler's write() answers false until the reader catches up, so a
 * reader that stops still stops its producer.
 *
 * Only unary and server-streaming methods take the hop; calls with a request stream stay on
 * grpc-js. A server opts in (startGrpcServer's `inProcess`) and leaves the registry as its
 * shutdown starts, so later calls go over the network and meet a closing server, as before.
 */
import { EventEmitter } from "node:events";
import { clone, create, isMessage, type DescMessage, type DescMethod, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Metadata, type StatusObject, type UntypedHandleCall, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { metadataToHeaders } from "./metadata.js";
import { grpcPath, grpcStatus } from "./service-definition.js";

type AnyMessage = MessageShape<DescMessage>;
type AnyInit = MessageInitShape<DescMessage>;
type Status = Partial<StatusObject>;

/** Call options the hop honours (the same subset as createGrpcClient). */
export interface LocalCallOptions {
  readonly signal?: AbortSignal | undefined;
  readonly onHeader?: ((headers: Headers) => void) | undefined;
  readonly onTrailer?: ((trailers: Headers) => void) | undefined;
}

/** Streamed responses buffered for a slow reader before the handler's write() answers false. */
export const STREAM_HIGH_WATER = 16;

/** The peer a handler sees for a call that took the hop. */
export const IN_PROCESS_PEER = "in-process";

const OK = 0;

interface LocalMethod {
  readonly method: DescMethod;
  readonly handler: UntypedHandleCall;
}

/** The handlers of one server of this process, reachable by the addresses it listens on. */
export class LocalServer {
  private readonly methods = new Map<string, LocalMethod>();
  private readonly calls = new Set<LocalCall>();
  private readonly addresses: string[] = [];
  private idleWaiters: (() => void)[] = [];

  constructor(readonly host: string) {}

  /** Mounts the unary and server-streaming methods of `desc` (handlers as toGrpcHandlers builds them). */
  add(desc: DescService, handlers: UntypedServiceImplementation): void {
    for (const method of desc.methods) {
      if (method.methodKind !== "unary" && method.methodKind !== "server_streaming") continue;
      const handler = handlers[method.localName];
      if (handler) this.methods.set(grpcPath(method), { method, handler });
    }
  }

  /** Starts taking calls addressed to `host:port` (and its loopback aliases). */
  listen(port: number): void {
    const hosts = LOOPBACK.has(this.host) ? [...LOOPBACK] : [this.host];
    for (const h of hosts) {
      const address = `${h.includes(":") ? `[${h}]` : h}:${port}`;
      if (registry.has(address)) continue;
      registry.set(address, this);
      this.addresses.push(address);
    }
  }

  /** No new calls from now on (they go over the network); calls in flight go on. */
  unlisten(): void {
    for (const address of this.addresses.splice(0)) {
      if (registry.get(address) === this) registry.delete(address);
    }
  }

  /** Resolves once no call is in flight. */
  idle(): Promise<void> {
    if (this.calls.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Ends every call in flight: handlers see them cancelled, callers get UNAVAILABLE. */
  cancelAll(): void {
    for (const call of [...this.calls]) call.abandon(Code.Unavailable, "the server shut down");
  }

  lookup(path: string): LocalMethod | undefined {
    return this.methods.get(path);
  }

  track(call: LocalCall): void {
    this.calls.add(call);
  }

  untrack(call: LocalCall): void {
    this.calls.delete(call);
    if (this.calls.size === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}

const LOOPBACK = new Set(["127.0.0.1", "localhost"]);

/** Servers of this process by the gRPC targets that reach them. */
const registry = new Map<string, LocalServer>();

/** The server of this process a call to `target` would reach, if any (and still listening). */
export function localServerAt(target: string): LocalServer | undefined {
  return registry.size === 0 ? undefined : registry.get(target);
}

/** One call about to take the hop. */
export interface LocalRequest {
  readonly server: LocalServer;
  readonly local: LocalMethod;
  readonly request: AnyInit;
  readonly metadata: Metadata;
  /** Absolute, ms since epoch; Infinity without a deadline. */
  readonly deadlineAt: number;
  readonly opts: LocalCallOptions | undefined;
}

/** A unary call through the hop. */
export function callUnary({ server, local, request, metadata, deadlineAt, opts }: LocalRequest): Promise<AnyMessage> {
  return new Promise<AnyMessage>((resolve, reject) => {
    let req: AnyMessage;
    try {
      req = crossing(local.method.input, request);
    } catch (e) {
      return reject(e);
    }
    const call = new LocalUnaryCall(server, local.method, req, metadata, deadlineAt, opts, resolve, reject);
    call.start(local.handler);
  });
}

/** A server-streaming call through the hop; the call starts on the first read. */
export function callServerStream({ server, local, request, metadata, deadlineAt, opts }: LocalRequest): AsyncIterator<AnyMessage> {
  let call: LocalStreamCall | undefined;
  let failed: unknown;
  const begin = (): LocalStreamCall | undefined => {
    if (call || failed !== undefined) return call;
    try {
      call = new LocalStreamCall(server, local.method, crossing(local.method.input, request), metadata, deadlineAt, opts);
      call.start(local.handler);
    } catch (e) {
      failed = e;
    }
    return call;
  };
  return {
    next() {
      const c = begin();
      return c ? c.next() : Promise.reject(failed);
    },
    return() {
      call?.abandon(Code.Canceled, "Cancelled on client");
      return Promise.resolve({ value: undefined, done: true });
    },
  };
}

function statusOf(code: Code, details: string): Status {
  return { code: grpcStatus(code), details };
}

/**
 * A message as the other side receives it: a deep copy (protobuf-es `clone`, ~10x cheaper than
 * an encode and decode here), so neither side ever holds the other's objects: the gateway sets
 * fields on answers that a service may keep in a cache.
 */
function crossing(schema: DescMessage, value: AnyInit): AnyMessage {
  return clone(schema, isMessage(value, schema) ? value : create(schema, value));
}

/**
 * The server side of one call, shaped like the grpc-js call objects the handlers take, and the
 * caller's end of it. `over` is set once the caller has its answer (a status from the handler,
 * or the caller went away / the deadline passed, which the handler sees as a cancelled call).
 */
abstract class LocalCall extends EventEmitter {
  cancelled = false;
  protected over = false;
  private headerSent = false;
  private timer: NodeJS.Timeout | undefined;
  private unlinkSignal: (() => void) | undefined;

  constructor(
    protected readonly server: LocalServer,
    protected readonly method: DescMethod,
    readonly request: AnyMessage,
    readonly metadata: Metadata,
    private readonly deadlineAt: number,
    protected readonly opts: LocalCallOptions | undefined,
  ) {
    super();
  }

  start(handler: UntypedHandleCall): void {
    const signal = this.opts?.signal;
    if (signal?.aborted) throw new ConnectError("the operation was aborted", Code.Canceled, undefined, undefined, signal.reason);
    this.server.track(this);
    if (Number.isFinite(this.deadlineAt)) {
      this.timer = setTimeout(() => this.abandon(Code.DeadlineExceeded, "Deadline exceeded"), Math.max(0, this.deadlineAt - Date.now()));
    }
    if (signal) {
      const onAbort = (): void => this.abandon(Code.Canceled, "Cancelled on client");
      signal.addEventListener("abort", onAbort, { once: true });
      this.unlinkSignal = () => signal.removeEventListener("abort", onAbort);
    }
    try {
      this.invoke(handler);
    } catch (e) {
      this.close(statusOf(Code.Internal, e instanceof Error ? e.message : String(e)));
    }
  }

  protected abstract invoke(handler: UntypedHandleCall): void;
  /** Hands the caller its answer (called once). */
  protected abstract settle(error: ConnectError | undefined, response: AnyMessage | undefined): void;

  getDeadline(): number {
    return this.deadlineAt;
  }
  getHost(): string {
    return this.server.host;
  }
  getPeer(): string {
    return IN_PROCESS_PEER;
  }
  getPath(): string {
    return grpcPath(this.method);
  }

  sendMetadata(md: Metadata): void {
    if (!this.over) this.headerOnce(md);
  }

  /** The caller's onHeader, once per call; Headers are only built when someone asked for them. */
  protected headerOnce(md?: Metadata): void {
    if (this.headerSent) return;
    this.headerSent = true;
    const onHeader = this.opts?.onHeader;
    if (onHeader) onHeader(md ? metadataToHeaders(md) : new Headers());
  }

  /** The caller went away or the deadline passed: the caller gets `code`, the handler a cancelled call. */
  abandon(code: Code, details: string): void {
    if (this.over) return;
    this.cancelled = true;
    this.finish(new ConnectError(details, code), undefined);
    this.emit("cancelled", "cancelled");
  }

  /** The handler's final status (and response, for unary calls). */
  protected close(status: Status, response?: AnyMessage): void {
    if (this.over) return;
    this.headerOnce();
    const code = (status.code ?? Code.Unknown) as number as Code;
    const ok = (code as number) === OK;
    const onTrailer = this.opts?.onTrailer;
    if (ok && !onTrailer) return this.finish(undefined, response);
    const trailer = status.metadata ? metadataToHeaders(status.metadata) : new Headers();
    onTrailer?.(trailer);
    if (ok) return this.finish(undefined, response);
    // Like a trailers-only gRPC answer: its content-type tells the edge the service itself answered.
    trailer.set("content-type", "application/grpc");
    this.finish(new ConnectError(status.details ?? "", code, trailer), undefined);
  }

  private finish(error: ConnectError | undefined, response: AnyMessage | undefined): void {
    this.over = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.unlinkSignal?.();
    this.server.untrack(this);
    this.settle(error, response);
  }
}

class LocalUnaryCall extends LocalCall {
  constructor(
    server: LocalServer,
    method: DescMethod,
    request: AnyMessage,
    metadata: Metadata,
    deadlineAt: number,
    opts: LocalCallOptions | undefined,
    private readonly resolve: (m: AnyMessage) => void,
    private readonly reject: (e: unknown) => void,
  ) {
    super(server, method, request, metadata, deadlineAt, opts);
  }

  protected invoke(handler: UntypedHandleCall): void {
    (handler as (call: unknown, callback: (err: Status | null, value?: AnyInit | null, trailer?: Metadata) => void) => void)(
      this,
      (err, value, trailer) => {
        if (err) return this.close(err);
        let res: AnyMessage;
        try {
          res = crossing(this.method.output, value ?? {});
        } catch (e) {
          return this.close(statusOf(Code.Internal, `unusable response: ${String(e)}`));
        }
        this.close({ code: OK, details: "OK", ...(trailer ? { metadata: trailer } : {}) }, res);
      },
    );
  }

  protected settle(error: ConnectError | undefined, response: AnyMessage | undefined): void {
    if (error) this.reject(error);
    else this.resolve(response!);
  }
}

class LocalStreamCall extends LocalCall {
  private readonly queue: AnyMessage[] = [];
  private reader: { resolve: (r: IteratorResult<AnyMessage>) => void; reject: (e: unknown) => void } | undefined;
  /** undefined while running; null after a clean end; the error otherwise. */
  private outcome: ConnectError | null | undefined = undefined;
  private wantsDrain = false;

  constructor(...args: ConstructorParameters<typeof LocalCall>) {
    super(...args);
    // A stream handler ends its call with an 'error' event carrying the status (grpc-js does the same).
    this.on("error", (status: Status) => this.close(status));
  }

  protected invoke(handler: UntypedHandleCall): void {
    (handler as (call: unknown) => void)(this);
  }

  /** The handler sends one response; false asks it to wait for 'drain'. */
  write(message: AnyInit): boolean {
    if (this.over) return false;
    let copy: AnyMessage;
    try {
      copy = crossing(this.method.output, message);
    } catch (e) {
      this.close(statusOf(Code.Internal, `unusable response: ${String(e)}`));
      return false;
    }
    this.headerOnce();
    const reader = this.reader;
    if (reader) {
      this.reader = undefined;
      reader.resolve({ value: copy, done: false });
      return true;
    }
    this.queue.push(copy);
    if (this.queue.length < STREAM_HIGH_WATER) return true;
    this.wantsDrain = true;
    return false;
  }

  /** The handler's clean end, with its trailers. */
  end(trailer?: Metadata): void {
    this.close({ code: OK, details: "OK", ...(trailer ? { metadata: trailer } : {}) });
  }

  next(): Promise<IteratorResult<AnyMessage>> {
    const value = this.queue.shift();
    if (value !== undefined) {
      if (this.wantsDrain && this.queue.length === 0) {
        this.wantsDrain = false;
        this.emit("drain");
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.outcome === null) return Promise.resolve({ value: undefined, done: true });
    if (this.outcome) return Promise.reject(this.outcome);
    return new Promise((resolve, reject) => (this.reader = { resolve, reject }));
  }

  override abandon(code: Code, details: string): void {
    // Like a reset stream: what was buffered is not read after the caller went away.
    if (!this.over) this.queue.length = 0;
    super.abandon(code, details);
  }

  protected settle(error: ConnectError | undefined): void {
    this.outcome = error ?? null;
    const reader = this.reader;
    if (!reader) return;
    this.reader = undefined;
    if (error) reader.reject(error);
    else reader.resolve({ value: undefined, done: true });
  }
}
