import type { Link, LinkStore } from "../ports.js";

/** In-process LinkStore (memory engine and unit tests). */
export class MemoryLinkStore implements LinkStore {
  private readonly links = new Map<string, Link>();

  async insertIfAbsent(link: Link): Promise<boolean> {
    if (this.links.has(link.code)) return false;
    this.links.set(link.code, copy(link));
    return true;
  }

  async get(code: string): Promise<Link | undefined> {
    const l = this.links.get(code);
    return l ? copy(l) : undefined;
  }

  async delete(code: string): Promise<boolean> {
    return this.links.delete(code);
  }
}

function copy(l: Link): Link {
  return {
    code: l.code,
    longUrl: l.longUrl,
    ownerId: l.ownerId,
    createdAt: new Date(l.createdAt.getTime()),
    ...(l.expiresAt ? { expiresAt: new Date(l.expiresAt.getTime()) } : {}),
    redirectType: l.redirectType,
  };
}
