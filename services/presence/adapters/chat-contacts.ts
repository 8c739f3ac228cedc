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
import { RecentValues } from "../../../platform/recent-values.js";
import type { ChatStore } from "../../chat/ports.js";
import type { Contacts } from "../ports.js";

export interface ChatContactsOptions {
  /** Groups with at most this many members make their members contacts. */
  readonly maxGroupMembers: number;
  readonly ttlMs: number;
  readonly maxEntries?: number;
  readonly now?: () => number;
}

/** Channel member reads in flight per lookup. */
const PARALLEL_READS = 16;

export class ChatContacts implements Contacts {
  private readonly contacts: RecentValues<ReadonlySet<string>>;
  private readonly channels: RecentValues<ReadonlySet<string>>;
  /** channelId -> its members when it fans out (at most maxGroupMembers), else []. */
  private readonly members: RecentValues<readonly string[]>;

  constructor(
    private readonly store: Pick<ChatStore, "userChannels" | "getMembers">,
    private readonly opts: ChatContactsOptions,
  ) {
    const recent = { ttlMs: opts.ttlMs, maxEntries: opts.maxEntries ?? 100_000, ...(opts.now ? { now: opts.now } : {}) };
    this.contacts = new RecentValues(recent);
    this.channels = new RecentValues(recent);
    this.members = new RecentValues(recent);
  }

  channelsOf(userId: string): Promise<ReadonlySet<string>> {
    return this.channels.get(userId, async () => {
      const rows = await this.store.userChannels(userId);
      return new Set(rows.filter((r) => r.leftId === undefined).map((r) => r.channelId));
    });
  }

  contactsOf(userId: string): Promise<ReadonlySet<string>> {
    return this.contacts.get(userId, async () => {
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
    return this.members.get(channelId, async () => {
      const members = await this.store.getMembers(channelId);
      return members.length > this.opts.maxGroupMembers ? [] : members.map((m) => m.userId);
    });
  }
}
