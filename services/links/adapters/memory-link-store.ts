import { decodePageToken, encodePageToken } from "../page-token.js";
import {
  EXPIRED_RETENTION_MS,
  foldCode,
  versionOf,
  type IdempotencyRecord,
  type Link,
  type LinkPage,
  type LinkStore,
  type UpdateResult,
} from "../ports.js";

/** In-process LinkStore (memory engine and unit tests). */
export class MemoryLinkStore implements LinkStore {
  private readonly links = new Map<string, Link>();
  /** owner -> code -> createdAt ms (the listing index). */
  private readonly byOwner = new Map<string, Map<string, number>>();
  private readonly idem = new Map<string, { record: IdempotencyRecord; expiresAt: number }>();
  /** Folded code -> the code that holds it (links stored through insertIfAbsent). */
  private readonly folded = new Map<string, string>();

  constructor(private readonly now: () => number = Date.now) {}

  async insertIfAbsent(link: Link): Promise<boolean> {
    if (this.live(link.code)) return false;
    const f = foldCode(link.code);
    const holder = this.folded.get(f);
    if (holder !== undefined && holder !== link.code && this.live(holder)) return false;
    this.folded.set(f, link.code);
    this.put(link);
    return true;
  }

  async insertUnique(link: Link): Promise<void> {
    this.put(link);
  }

  async get(code: string): Promise<Link | undefined> {
    const l = this.live(code);
    return l ? copy(l) : undefined;
  }

  async update(next: Link, expectedVersion: number): Promise<UpdateResult> {
    const cur = this.live(next.code);
    if (!cur) return { kind: "not_found" };
    if (versionOf(cur) !== expectedVersion) return { kind: "version_mismatch" };
    const stored: Link = { ...next, ownerId: cur.ownerId, createdAt: cur.createdAt, ...(cur.custom !== undefined ? { custom: cur.custom } : {}) };
    this.links.set(next.code, copy(stored));
    return { kind: "updated", link: copy(stored) };
  }

  async delete(code: string, ownerId?: string): Promise<boolean> {
    const cur = this.live(code);
    if (!cur || (ownerId !== undefined && cur.ownerId !== ownerId)) return false;
    this.remove(cur);
    return true;
  }

  async listByOwner(ownerId: string, pageSize: number, pageToken?: string): Promise<LinkPage> {
    let after: { t: number; c: string } | undefined;
    if (pageToken) {
      const s = decodePageToken(ownerId, pageToken);
      const m = /^(-?\d+):(.*)$/.exec(s);
      if (!m) decodePageToken(ownerId, "!"); // throws InvalidArgument
      after = { t: Number(m![1]), c: m![2]! };
    }
    const entries = [...(this.byOwner.get(ownerId) ?? new Map<string, number>()).entries()]
      .map(([c, t]) => ({ c, t }))
      .sort((a, b) => b.t - a.t || (a.c < b.c ? -1 : a.c > b.c ? 1 : 0))
      .filter((e) => !after || e.t < after.t || (e.t === after.t && e.c > after.c));
    const page = entries.slice(0, pageSize);
    const links = page.map((e) => this.live(e.c)).filter((l): l is Link => !!l && l.ownerId === ownerId).map(copy);
    const last = page[page.length - 1];
    return {
      links,
      ...(entries.length > pageSize && last ? { nextPageToken: encodePageToken(ownerId, `${last.t}:${last.c}`) } : {}),
    };
  }

  async reserveIdempotencyKey(
    ownerId: string,
    key: string,
    record: IdempotencyRecord,
    ttlMs: number,
  ): Promise<{ reserved: boolean; record: IdempotencyRecord }> {
    const k = idemKey(ownerId, key);
    const cur = this.idemLive(k);
    if (cur) return { reserved: false, record: { ...cur } };
    this.idem.set(k, { record: { ...record }, expiresAt: this.now() + ttlMs });
    return { reserved: true, record: { ...record } };
  }

  async getIdempotencyKey(ownerId: string, key: string): Promise<IdempotencyRecord | undefined> {
    const cur = this.idemLive(idemKey(ownerId, key));
    return cur ? { ...cur } : undefined;
  }

  async releaseIdempotencyKey(ownerId: string, key: string, code: string): Promise<void> {
    const k = idemKey(ownerId, key);
    if (this.idemLive(k)?.code === code) this.idem.delete(k);
  }

  private put(link: Link): void {
    this.links.set(link.code, copy(link));
    let idx = this.byOwner.get(link.ownerId);
    if (!idx) this.byOwner.set(link.ownerId, (idx = new Map()));
    idx.set(link.code, link.createdAt.getTime());
  }

  /** The stored link unless its retention after expiry has passed (the Cassandra row TTL). */
  private live(code: string): Link | undefined {
    const l = this.links.get(code);
    if (l?.expiresAt && l.expiresAt.getTime() + EXPIRED_RETENTION_MS <= this.now()) {
      this.remove(l);
      return undefined;
    }
    return l;
  }

  private remove(l: Link): void {
    this.links.delete(l.code);
    this.byOwner.get(l.ownerId)?.delete(l.code);
    const f = foldCode(l.code);
    if (this.folded.get(f) === l.code) this.folded.delete(f);
  }

  private idemLive(k: string): IdempotencyRecord | undefined {
    const e = this.idem.get(k);
    if (e && e.expiresAt <= this.now()) {
      this.idem.delete(k);
      return undefined;
    }
    return e?.record;
  }
}

const idemKey = (ownerId: string, key: string): string => `${ownerId.length}:${ownerId}:${key}`;

function copy(l: Link): Link {
  return {
    code: l.code,
    longUrl: l.longUrl,
    ownerId: l.ownerId,
    createdAt: new Date(l.createdAt.getTime()),
    ...(l.expiresAt ? { expiresAt: new Date(l.expiresAt.getTime()) } : {}),
    redirectType: l.redirectType,
    ...(l.updatedAt ? { updatedAt: new Date(l.updatedAt.getTime()) } : {}),
    ...(l.version !== undefined ? { version: l.version } : {}),
    ...(l.custom !== undefined ? { custom: l.custom } : {}),
  };
}
