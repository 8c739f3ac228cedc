/**
 * Contacts from chat's ChatStore (services/chat/ports.ts): a user's channels (`userChannels`,
 * current memberships only) and their members (`getMembers`). Cached per user for `ttlMs`, so a
 * user's contacts are read once per TTL however many transitions and watches need them: the cost
 * follows transitions and watch opens, never the number of online users. Concurrent lookups of
 * one user share one read. At most `maxEntries` users are cached (oldest dropped first).
 */
import type { ChatStore } from "../../chat/ports.js";
import type { Contacts } from "../ports.js";

export interface ChatContactsOptions {
  /** Groups with at most this many members make their members contacts. */
  readonly maxGroupMembers: number;
  readonly ttlMs: number;
  readonly maxEntries?: number;
  readonly now?: () => number;
}

interface Entry<T> {
  readonly at: number;
  readonly value: Promise<T>;
}

/** Channel member reads in flight per lookup. */
const PARALLEL_READS = 16;

export class ChatContacts implements Contacts {
  private readonly contacts = new Map<string, Entry<ReadonlySet<string>>>();
  private readonly channels = new Map<string, Entry<ReadonlySet<string>>>();
  private readonly now: () => number;
  private readonly maxEntries: number;

  constructor(
    private readonly store: Pick<ChatStore, "userChannels" | "getMembers">,
    private readonly opts: ChatContactsOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.maxEntries = opts.maxEntries ?? 100_000;
  }

  channelsOf(userId: string): Promise<ReadonlySet<string>> {
    return this.cached(this.channels, userId, async () => {
      const rows = await this.store.userChannels(userId);
      return new Set(rows.filter((r) => r.leftId === undefined).map((r) => r.channelId));
    });
  }

  contactsOf(userId: string): Promise<ReadonlySet<string>> {
    return this.cached(this.contacts, userId, async () => {
      const ids = [...(await this.channelsOf(userId))];
      const out = new Set<string>();
      for (let i = 0; i < ids.length; i += PARALLEL_READS) {
        const lists = await Promise.all(ids.slice(i, i + PARALLEL_READS).map((c) => this.store.getMembers(c)));
        for (const members of lists) {
          if (members.length > this.opts.maxGroupMembers) continue;
          for (const m of members) if (m.userId !== userId) out.add(m.userId);
        }
      }
      return out;
    });
  }

  private cached<T>(map: Map<string, Entry<T>>, key: string, load: () => Promise<T>): Promise<T> {
    const now = this.now();
    const hit = map.get(key);
    if (hit && now - hit.at < this.opts.ttlMs) return hit.value;
    const value = load();
    map.delete(key);
    map.set(key, { at: now, value });
    // A failed read is not cached.
    value.catch(() => {
      if (map.get(key)?.value === value) map.delete(key);
    });
    while (map.size > this.maxEntries) map.delete(map.keys().next().value!);
    return value;
  }
}
