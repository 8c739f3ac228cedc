/**
 * Coordinator port: ZooKeeper-shaped coordination (counters by compare-and-set, service
 * registration with ephemeral nodes, membership lists).
 *
 * Paths are absolute, slash-separated, without a trailing slash ("/switchboard/counters/links").
 *
 * - `get(path)` returns the node's data and version (0 after create, +1 per successful write),
 *   or undefined when the node does not exist.
 * - `create(path, data)` makes a persistent node, creating missing parents (empty data).
 *   DomainError "AlreadyExists" when the node exists.
 * - `compareAndSet(path, data, expectedVersion)` writes only when the current version equals
 *   expectedVersion; false on a version mismatch; DomainError "NotFound" when the node is missing.
 * - `registerEphemeral(path, data)` creates an ephemeral node (parents are persistent). It
 *   disappears when `release()` is called or when this coordinator's session ends (close, crash,
 *   session expiry). "AlreadyExists" when the path is taken. After a session expiry the owner
 *   must register again (listen for the "expired" session event).
 * - `children(path)` returns the child names (not full paths), sorted; [] for a missing node.
 * - `watchChildren(path, listener)` calls the listener with the children of `path` and their
 *   data, soon after the call and again after every change (a child created or removed, a
 *   child's data rewritten, an ephemeral child gone with its session), coalescing bursts; after
 *   a lost or renewed session it reads the children again. While the backend is unreachable the
 *   listener is not called (the last snapshot stands). Returns a function that stops the watch.
 * - `Registration.update(data)` rewrites the data of a registered ephemeral node (watchers see it).
 *
 * Errors: when the backend is unreachable, calls fail fast with DomainError "Unavailable".
 * A connection loss DURING a write also surfaces as "Unavailable": the write may or may not have
 * happened, so the caller must re-read (e.g. get + compareAndSet again) before retrying.
 */
import { invalidArgument } from "../errors.js";

export interface VersionedData {
  readonly data: Uint8Array;
  readonly version: number;
}

export interface Registration {
  readonly path: string;
  /** Rewrites the node's data; Unavailable while the session is not connected, NotFound once it is gone. */
  update(data: Uint8Array): Promise<void>;
  release(): Promise<void>;
}

/** Children of a watched node by name, with their data. */
export type ChildrenSnapshot = ReadonlyMap<string, Uint8Array>;

/**
 * "connected": a session is usable. "disconnected": connection lost, the session may still come
 * back (ephemerals kept). "expired": the session ended; its ephemeral nodes are gone and a new
 * session is being established.
 */
export type SessionState = "connected" | "disconnected" | "expired";

export interface Coordinator {
  get(path: string): Promise<VersionedData | undefined>;
  create(path: string, data: Uint8Array): Promise<void>;
  compareAndSet(path: string, data: Uint8Array, expectedVersion: number): Promise<boolean>;
  registerEphemeral(path: string, data: Uint8Array): Promise<Registration>;
  children(path: string): Promise<string[]>;
  watchChildren(path: string, listener: (children: ChildrenSnapshot) => void): () => void;
  /** Current state; operations fail with Unavailable unless "connected". */
  readonly sessionState: SessionState;
  /** Subscribe to session state changes; returns an unsubscribe function. */
  onSessionState(listener: (state: SessionState) => void): () => void;
}

/** Validates an absolute path; returns its segments. Shared by adapters. */
export function pathSegments(path: string): string[] {
  if (!path.startsWith("/") || path === "/" || path.endsWith("/") || path.includes("//")) {
    throw invalidArgument("path", `must be absolute without a trailing slash (got "${path}")`);
  }
  return path.slice(1).split("/");
}
