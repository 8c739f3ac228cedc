/**
 * Contacts from chat's ChatStore (services/chat/ports.ts): a user's channels (`userChannels`,
 * current memberships only) and their members (`getMembers`). Cached per user for `ttlMs`, so a
 * user's contacts are read once per TTL however many transitions and watches need them: the cost
 * follows transitions and watch opens, never the number of online users. Concurrent lookups of
 * one user share one read. At most `maxEntries` users are cached (oldest dropped first).
 *
 * A channel's members are cached per channel for the TTL too (the same staleness as the per-user
 * cache): when a group's members come online together (a login storm), the group is read once,
 * not once per member, so a transition costs one Cassandra read (`userChannels`) instead of one
 * per channel. Groups larger than the fan-out size are cached as "no contacts" (their member list
 * is not kept).
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
  /** channelId -> its members when it fans out (at most maxGroupMembers), else []. */
  private readonly members = new Map<string, Entry<readonly string[]>>();
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
        const lists = await Promise.all(ids.slice(i, i + PARALLEL_READS).map((c) => this.fanoutMembers(c)));
        for (const members of lists) for (const m of members) if (m !== userId) out.add(m);
      }
      return out;
    });
  }

  private fanoutMembers(channelId: string): Promise<readonly string[]> {
    return this.cached(this.members, channelId, async () => {
      const members = await this.store.getMembers(channelId);
      return members.length > this.opts.maxGroupMembers ? [] : members.map((m) => m.userId);
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
