import { DomainError, notFound } from "../../errors.js";
import {
  pathSegments,
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

  removeEphemerals(owner: MemoryCoordinator, from: Node = this.root): void {
    for (const [name, child] of from.children) {
      if (child.owner === owner) from.children.delete(name);
      else this.removeEphemerals(owner, child);
    }
  }
}

/** One session on a MemoryCoordinationTree; always "connected" until closed. */
export class MemoryCoordinator implements Coordinator {
  private state: SessionState = "connected";
  private readonly listeners = new Set<(s: SessionState) => void>();

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
    return true;
  }

  async registerEphemeral(path: string, data: Uint8Array): Promise<Registration> {
    this.live();
    const node = this.insert(path, data, this);
    return {
      path,
      release: async () => {
        const segs = pathSegments(path);
        const parent = segs.length === 1 ? this.tree.root : this.tree.find("/" + segs.slice(0, -1).join("/"));
        const name = segs[segs.length - 1]!;
        if (parent && parent.children.get(name) === node) parent.children.delete(name);
      },
    };
  }

  async children(path: string): Promise<string[]> {
    this.live();
    const n = this.tree.find(path);
    return n ? [...n.children.keys()].sort() : [];
  }

  /** Ends the session: its ephemeral nodes disappear. */
  close(): void {
    if (this.state === "expired") return;
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
    return node;
  }
}
