import { CreateMode, Event, Exception, State, createClient, type Client } from "node-zookeeper-client";
import { DomainError, notFound } from "../../errors.js";
import {
  pathSegments,
  type ChildrenSnapshot,
  type Coordinator,
  type Registration,
  type SessionState,
  type VersionedData,
} from "../../ports/coordinator.js";
import { silentLog, type EngineLog } from "../log.js";

export interface ZooKeeperCoordinatorOptions {
  readonly connectString: string;
  readonly sessionTimeoutMs: number;
  /** An operation without a reply in this time fails with Unavailable (default min(session, 5000)). */
  readonly operationTimeoutMs?: number;
  readonly log?: EngineLog;
}

/**
 * Coordinator on ZooKeeper (node-zookeeper-client). Connects in the background and keeps
 * trying; while there is no live session, calls fail fast with Unavailable. When a session
 * expires the adapter emits "expired" and opens a new session (ephemeral nodes of the old one are
 * gone; owners re-register). CONNECTION_LOSS / SESSION_EXPIRED / a timeout during a call surface
 * as Unavailable: the outcome of a write is then unknown.
 */
export class ZooKeeperCoordinator implements Coordinator {
  private client: Client;
  private state: SessionState = "disconnected";
  private closed = false;
  private everConnected = false;
  private readonly listeners = new Set<(s: SessionState) => void>();
  private readonly watchStops = new Set<() => void>();
  private readonly log: EngineLog;
  private readonly opTimeoutMs: number;

  constructor(private readonly options: ZooKeeperCoordinatorOptions) {
    this.log = (options.log ?? silentLog).child({ component: "zookeeper" });
    this.opTimeoutMs = options.operationTimeoutMs ?? Math.min(options.sessionTimeoutMs, 5_000);
    this.client = this.open();
  }

  get sessionState(): SessionState {
    return this.state;
  }

  onSessionState(listener: (state: SessionState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  status(): { ok: boolean; detail: string } {
    const ok = this.state === "connected";
    return {
      ok,
      detail: ok
        ? `session 0x${this.client.getSessionId().toString("hex")} on ${this.options.connectString}`
        : `${this.everConnected ? this.state : "never connected"} (${this.options.connectString})`,
    };
  }

  /** Resolves once a session is established (or rejects after timeoutMs). */
  whenConnected(timeoutMs = 30_000): Promise<void> {
    if (this.state === "connected") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        off();
        reject(new DomainError("Unavailable", `zookeeper not connected within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onSessionState((s) => {
        if (s === "connected") {
          clearTimeout(t);
          off();
          resolve();
        }
      });
    });
  }

  async get(path: string): Promise<VersionedData | undefined> {
    pathSegments(path);
    return this.call<VersionedData | undefined>("get", path, (c, done) =>
      c.getData(path, (err, data, stat) => {
        if (err && code(err) === Exception.NO_NODE) return done(null, undefined);
        done(err, err ? undefined : { data: new Uint8Array(data ?? Buffer.alloc(0)), version: stat.version });
      }),
    );
  }

  async create(path: string, data: Uint8Array): Promise<void> {
    await this.ensureParent(path);
    await this.createNode(path, data, CreateMode.PERSISTENT);
  }

  async compareAndSet(path: string, data: Uint8Array, expectedVersion: number): Promise<boolean> {
    pathSegments(path);
    return this.call<boolean>("compareAndSet", path, (c, done) =>
      c.setData(path, Buffer.from(data), expectedVersion, (err) => {
        if (!err) return done(null, true);
        const k = code(err);
        if (k === Exception.BAD_VERSION) return done(null, false);
        if (k === Exception.NO_NODE) return done(notFound(`node ${path}`), false);
        done(err, false);
      }),
    );
  }

  async registerEphemeral(path: string, data: Uint8Array): Promise<Registration> {
    await this.ensureParent(path);
    await this.createNode(path, data, CreateMode.EPHEMERAL);
    const owner = this.client;
    return {
      path,
      update: async (next) => {
        if (owner !== this.client || this.closed) throw notFound(`node ${path} (its session ended)`);
        await this.call<void>("update", path, (c, done) =>
          c.setData(path, Buffer.from(next), -1, (err) => done(err && code(err) === Exception.NO_NODE ? notFound(`node ${path}`) : err, undefined)),
        );
      },
      release: async () => {
        // A new session means the node already went with the old one.
        if (owner !== this.client || this.closed) return;
        await this.call<void>("release", path, (c, done) =>
          c.remove(path, -1, (err) => done(err && code(err) === Exception.NO_NODE ? null : err, undefined)),
        );
      },
    };
  }

  async children(path: string): Promise<string[]> {
    pathSegments(path);
    return this.call<string[]>("children", path, (c, done) =>
      c.getChildren(path, (err, kids) => {
        if (err && code(err) === Exception.NO_NODE) return done(null, []);
        done(err, err ? [] : [...kids].sort());
      }),
    );
  }

  /**
   * ZooKeeper watches fire once: the children watch and each child's data watch are set again
   * on every read they trigger, with one stable function per path (the client keeps a function
   * once per path, so repeated reads never pile up watchers). Every new connection (reconnect or
   * new session) reads everything again.
   */
  watchChildren(path: string, listener: (children: ChildrenSnapshot) => void): () => void {
    pathSegments(path);
    let stopped = false;
    const data = new Map<string, Uint8Array>();
    let names: string[] = [];
    let emitPending = false;
    let retry: NodeJS.Timeout | undefined;
    const emit = (): void => {
      if (emitPending || stopped) return;
      emitPending = true;
      setImmediate(() => {
        emitPending = false;
        if (stopped) return;
        const snap = new Map<string, Uint8Array>();
        for (const n of names) {
          const d = data.get(n);
          if (d) snap.set(n, d);
        }
        listener(snap);
      });
    };
    const later = (): void => {
      if (stopped || retry) return;
      retry = setTimeout(() => {
        retry = undefined;
        readAll();
      }, 500);
      retry.unref();
    };
    const dataWatchers = new Map<string, (e: Event) => void>();
    const dataWatcher = (name: string): ((e: Event) => void) => {
      let w = dataWatchers.get(name);
      if (!w) {
        w = (e: Event) => {
          if (!stopped && e.getType() !== Event.NODE_DELETED) readData(name);
        };
        dataWatchers.set(name, w);
      }
      return w;
    };
    const readData = (name: string): void => {
      if (stopped || this.state !== "connected") return;
      this.client.getData(`${path}/${name}`, dataWatcher(name), (err, buf) => {
        if (stopped) return;
        if (err) {
          if (code(err) === Exception.NO_NODE) {
            data.delete(name);
            emit();
          } else later();
          return;
        }
        data.set(name, new Uint8Array(buf ?? Buffer.alloc(0)));
        emit();
      });
    };
    const childWatcher = (): void => {
      if (!stopped) readChildren(false);
    };
    const readChildren = (all: boolean): void => {
      if (stopped || this.state !== "connected") return;
      // exists() first: a watch on a node that does not exist yet must be an existence watch.
      this.client.exists(path, childWatcher, (err, stat) => {
        if (stopped) return;
        if (err) return later();
        if (!stat) {
          names = [];
          data.clear();
          emit();
          return;
        }
        this.client.getChildren(path, childWatcher, (err2, kids) => {
          if (stopped) return;
          if (err2) {
            if (code(err2) === Exception.NO_NODE) readChildren(all);
            else later();
            return;
          }
          const before = new Set(names);
          names = [...kids].sort();
          for (const n of [...data.keys()]) if (!kids.includes(n)) data.delete(n);
          for (const n of names) if (all || !before.has(n)) readData(n);
          emit();
        });
      });
    };
    const readAll = (): void => readChildren(true);
    const off = this.onSessionState((s) => {
      if (s === "connected") readAll();
    });
    readAll();
    const stop = (): void => {
      stopped = true;
      off();
      if (retry) clearTimeout(retry);
      this.watchStops.delete(stop);
    };
    this.watchStops.add(stop);
    return stop;
  }

  /** Ends the session (ephemeral nodes go away at once). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const stop of [...this.watchStops]) stop();
    const c = this.client;
    const wasConnected = this.state === "connected";
    this.state = "expired";
    if (wasConnected) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 2_000);
        c.once("disconnected", () => {
          clearTimeout(t);
          resolve();
        });
        c.close();
      });
    } else {
      c.close();
    }
  }

  private open(): Client {
    const c = createClient(this.options.connectString, {
      sessionTimeout: this.options.sessionTimeoutMs,
      spinDelay: 500,
      retries: 0,
    });
    c.on("state", (s: State) => {
      if (this.closed || c !== this.client) return;
      if (s === State.SYNC_CONNECTED) {
        this.everConnected = true;
        this.log.info({ sessionId: c.getSessionId().toString("hex") }, "zookeeper session connected");
        this.emit("connected");
      } else if (s === State.DISCONNECTED) {
        if (this.state === "connected") this.log.warn({}, "zookeeper disconnected");
        this.emit("disconnected");
      } else if (s === State.EXPIRED) {
        this.log.warn({}, "zookeeper session expired; opening a new session");
        this.emit("expired");
        c.close();
        this.client = this.open();
      }
    });
    c.connect();
    return c;
  }

  private emit(s: SessionState): void {
    if (this.state === s) return;
    this.state = s;
    for (const l of this.listeners) {
      try {
        l(s);
      } catch (err) {
        this.log.warn({ err }, "session listener failed");
      }
    }
  }

  private async ensureParent(path: string): Promise<void> {
    const segs = pathSegments(path);
    if (segs.length === 1) return;
    const parent = "/" + segs.slice(0, -1).join("/");
    await this.call<void>("mkdirp", parent, (c, done) => c.mkdirp(parent, (err) => done(err, undefined)));
  }

  private createNode(path: string, data: Uint8Array, mode: number): Promise<void> {
    return this.call<void>("create", path, (c, done) =>
      c.create(path, Buffer.from(data), mode, (err) => {
        if (!err) return done(null, undefined);
        const k = code(err);
        if (k === Exception.NODE_EXISTS) return done(new DomainError("AlreadyExists", `node ${path} already exists`), undefined);
        if (k === Exception.NO_CHILDREN_FOR_EPHEMERALS) {
          return done(new DomainError("FailedPrecondition", `ephemeral nodes cannot have children (${path})`), undefined);
        }
        done(err, undefined);
      }),
    );
  }

  private call<T>(op: string, path: string, f: (c: Client, done: (err: unknown, value: T) => void) => void): Promise<T> {
    if (this.closed || this.state !== "connected") {
      return Promise.reject(
        new DomainError("Unavailable", `zookeeper is unavailable (${this.status().detail})`, { retryAfterMs: 1000 }),
      );
    }
    return new Promise<T>((resolve, reject) => {
      let finished = false;
      const timer = setTimeout(() => {
        finished = true;
        reject(new DomainError("Unavailable", `zookeeper ${op} ${path} timed out; outcome unknown`, { retryAfterMs: 1000 }));
      }, this.opTimeoutMs);
      f(this.client, (err, value) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        if (!err) return resolve(value);
        if (err instanceof DomainError) return reject(err);
        const k = code(err);
        if (k === Exception.CONNECTION_LOSS || k === Exception.SESSION_EXPIRED || k === Exception.OPERATION_TIMEOUT) {
          return reject(new DomainError("Unavailable", `zookeeper ${op} ${path}: ${String(err)}; outcome unknown`, { retryAfterMs: 1000 }, { cause: err }));
        }
        reject(new DomainError("Internal", `zookeeper ${op} ${path} failed: ${String(err)}`, {}, { cause: err }));
      });
    });
  }
}

function code(err: unknown): number | undefined {
  if (err instanceof Exception) return err.getCode();
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === "number" ? c : undefined;
}

