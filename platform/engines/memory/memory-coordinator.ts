import { DomainError, notFound } from "../../errors.js";
import {
  pathSegments,
  type ChildrenSnapshot,
  type Coordinator,
  type Registration,
  type SessionState,
  type VersionedData,
} from "../../ports/coordinator.js";

interface Node {
  data: Uint8Array;
  version: number;
  /** Owning session for ephemeral nodes. */
  owner: MemoryCoordinator | undefined;
  children: Map<string, Node>;
}

/**
 * The shared tree several in-process sessions see (one per process in the memory engine;
 * tests open several sessions on one tree to exercise ephemeral nodes).
 */
export class MemoryCoordinationTree {
  readonly root: Node = { data: new Uint8Array(), version: 0, owner: undefined, children: new Map() };
  /** Watched parent path -> its watches (each coalesces its own notifications). */
  private readonly watches = new Map<string, Set<ChildWatch>>();

  session(): MemoryCoordinator {
    return new MemoryCoordinator(this);
  }

  find(path: string): Node | undefined {
    let n: Node | undefined = this.root;
    for (const seg of pathSegments(path)) {
      n = n.children.get(seg);
      if (!n) return undefined;
    }
    return n;
  }

  removeEphemerals(owner: MemoryCoordinator, from: Node = this.root, fromPath = ""): void {
    for (const [name, child] of from.children) {
      if (child.owner === owner) {
        from.children.delete(name);
        this.changed(fromPath || "/");
      } else this.removeEphemerals(owner, child, `${fromPath}/${name}`);
    }
  }

  watch(path: string, listener: (children: ChildrenSnapshot) => void): () => void {
    pathSegments(path);
    const w: ChildWatch = { listener, pending: false, stopped: false };
    let set = this.watches.get(path);
    if (!set) this.watches.set(path, (set = new Set()));
    set.add(w);
    this.schedule(path, w);
    return () => {
      w.stopped = true;
      set.delete(w);
      if (set.size === 0 && this.watches.get(path) === set) this.watches.delete(path);
    };
  }

  /** A child of `parentPath` was created, removed or rewritten. */
  changed(parentPath: string): void {
    for (const w of this.watches.get(parentPath) ?? []) this.schedule(parentPath, w);
  }

  private schedule(path: string, w: ChildWatch): void {
    if (w.pending) return;
    w.pending = true;
    setImmediate(() => {
      w.pending = false;
      if (w.stopped) return;
      const n = this.find(path);
      const snapshot = new Map<string, Uint8Array>();
      for (const [name, child] of [...(n?.children ?? [])].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
        snapshot.set(name, child.data.slice());
      }
      w.listener(snapshot);
    });
  }
}

interface ChildWatch {
  readonly listener: (children: ChildrenSnapshot) => void;
  pending: boolean;
  stopped: boolean;
}

function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/** One session on a MemoryCoordinationTree; always "connected" until closed. */
export class MemoryCoordinator implements Coordinator {
  private state: SessionState = "connected";
  private readonly listeners = new Set<(s: SessionState) => void>();
  private readonly watchStops = new Set<() => void>();

  constructor(private readonly tree: MemoryCoordinationTree = new MemoryCoordinationTree()) {}

  get sessionState(): SessionState {
    return this.state;
  }

  onSessionState(listener: (state: SessionState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async get(path: string): Promise<VersionedData | undefined> {
    this.live();
    const n = this.tree.find(path);
    return n ? { data: n.data.slice(), version: n.version } : undefined;
  }

  async create(path: string, data: Uint8Array): Promise<void> {
    this.live();
    this.insert(path, data, undefined);
  }

  async compareAndSet(path: string, data: Uint8Array, expectedVersion: number): Promise<boolean> {
    this.live();
    const n = this.tree.find(path);
    if (!n) throw notFound(`node ${path}`);
    if (n.version !== expectedVersion) return false;
    n.data = data.slice();
    n.version++;
    this.tree.changed(parentOf(path));
    return true;
  }

  async registerEphemeral(path: string, data: Uint8Array): Promise<Registration> {
    this.live();
    const node = this.insert(path, data, this);
    const segs = pathSegments(path);
    const parentPath = parentOf(path);
    const name = segs[segs.length - 1]!;
    const mine = (): boolean => {
      const parent = segs.length === 1 ? this.tree.root : this.tree.find(parentPath);
      return parent?.children.get(name) === node;
    };
    return {
      path,
      update: async (next) => {
        this.live();
        if (!mine()) throw notFound(`node ${path}`);
        node.data = next.slice();
        node.version++;
        this.tree.changed(parentPath);
      },
      release: async () => {
        if (!mine()) return;
        (segs.length === 1 ? this.tree.root : this.tree.find(parentPath))!.children.delete(name);
        this.tree.changed(parentPath);
      },
    };
  }

  async children(path: string): Promise<string[]> {
    this.live();
    const n = this.tree.find(path);
    return n ? [...n.children.keys()].sort() : [];
  }

  watchChildren(path: string, listener: (children: ChildrenSnapshot) => void): () => void {
    const stop = this.tree.watch(path, (children) => {
      if (this.state === "connected") listener(children);
    });
    this.watchStops.add(stop);
    return () => {
      this.watchStops.delete(stop);
      stop();
    };
  }

  /** Ends the session: its ephemeral nodes disappear. */
  close(): void {
    if (this.state === "expired") return;
    for (const stop of this.watchStops) stop();
    this.watchStops.clear();
    this.tree.removeEphemerals(this);
    this.state = "expired";
    for (const l of this.listeners) l("expired");
  }

  private live(): void {
    if (this.state !== "connected") throw new DomainError("Unavailable", "coordinator session is closed");
  }

  private insert(path: string, data: Uint8Array, owner: MemoryCoordinator | undefined): Node {
    const segs = pathSegments(path);
    let n = this.tree.root;
    for (const seg of segs.slice(0, -1)) {
      let next = n.children.get(seg);
      if (!next) {
        if (n.owner) throw new DomainError("FailedPrecondition", `ephemeral nodes cannot have children (${path})`);
        next = { data: new Uint8Array(), version: 0, owner: undefined, children: new Map() };
        n.children.set(seg, next);
      }
      n = next;
    }
    if (n.owner) throw new DomainError("FailedPrecondition", `ephemeral nodes cannot have children (${path})`);
    const name = segs[segs.length - 1]!;
    if (n.children.has(name)) throw new DomainError("AlreadyExists", `node ${path} already exists`);
    const node: Node = { data: data.slice(), version: 0, owner, children: new Map() };
    n.children.set(name, node);
    this.tree.changed(parentOf(path));
    return node;
  }
}
