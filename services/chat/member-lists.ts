/**
 * Channel member lists kept for a short while, for the calls that read them on every use (send,
 * history, typing). A send into a 100-member group read 100 member rows each time: about a fifth
 * of a chat server's CPU and a tenth of Cassandra's in group fan-out (bench/README.md, "member
 * lists kept").
 *
 * How stale a list can be, and why that is acceptable:
 * - A membership change made through this server forgets the list at once; one made on another
 *   server is forgotten here when its member_change event is routed in (services/chat/
 *   cluster/routed-delivery.ts, milliseconds); if that event is lost (core NATS is at most once),
 *   the list expires after `ttlMs`. So a removed member can go on sending and receiving live for
 *   that long at most, on a server that missed the change.
 * - A caller who is not in a kept list is looked up again before being refused: someone just
 *   added is never refused because of a stale list.
 * - A load that overlaps a forget (of any channel) is not kept: it may have read the old list.
 * - Empty lists (no such channel, or not created yet) are never kept.
 *
 * Bounded: at most `maxMembers` member records in all; the oldest lists go first.
 */
import type { ChatEvent } from "../../gen/switchboard/chat/v1/chat_pb.js";
import type { MemberRecord } from "./ports.js";

export interface MemberListsOptions {
  /** How long a list is used before it is read again; 0 keeps nothing. */
  readonly ttlMs: number;
  /** Member records kept in all, at most. */
  readonly maxMembers: number;
  readonly now?: () => number;
}

interface Kept {
  readonly members: readonly MemberRecord[];
  readonly at: number;
}

type Load = () => Promise<readonly MemberRecord[]>;

export class MemberLists {
  private readonly kept = new Map<string, Kept>();
  /** Loads in flight, shared by the callers that want the same list meanwhile. */
  private readonly loading = new Map<string, Promise<readonly MemberRecord[]>>();
  private size = 0;
  /** Counts forgets: a load that saw it change is not kept. */
  private epoch = 0;
  private readonly now: () => number;

  constructor(private readonly opts: MemberListsOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Member records kept now (metrics, tests). */
  get keptMembers(): number {
    return this.size;
  }

  /**
   * The channel's members as kept, or as `load` reads them; read again when `caller` is not in
   * a kept list.
   */
  async get(channelId: string, caller: string, load: Load): Promise<readonly MemberRecord[]> {
    const kept = this.kept.get(channelId);
    if (kept && this.now() - kept.at < this.opts.ttlMs) {
      if (kept.members.some((m) => m.userId === caller)) return kept.members;
      // Its own read, not one in flight that may have started before the caller was added.
      return this.load(channelId, load, false);
    }
    const pending = this.loading.get(channelId);
    if (!pending) return this.load(channelId, load, true);
    // A read already in flight may have started before the caller was added: read again then.
    const members = await pending;
    return members.some((m) => m.userId === caller) ? members : this.load(channelId, load, false);
  }

  /** The channel's membership changed: its list is read again next time. */
  forget(channelId: string): void {
    this.epoch++;
    this.loading.delete(channelId);
    const kept = this.kept.get(channelId);
    if (!kept) return;
    this.kept.delete(channelId);
    this.size -= kept.members.length;
  }

  /** A read of the list, kept when no forget happened meanwhile; `shared`: others may wait for it. */
  private load(channelId: string, load: Load, shared: boolean): Promise<readonly MemberRecord[]> {
    const epoch = this.epoch;
    const at = this.now();
    const p = load().then(
      (members) => {
        if (this.loading.get(channelId) === p) this.loading.delete(channelId);
        if (epoch === this.epoch) this.keep(channelId, members, at);
        return members;
      },
      (e: unknown) => {
        if (this.loading.get(channelId) === p) this.loading.delete(channelId);
        throw e;
      },
    );
    if (shared) this.loading.set(channelId, p);
    return p;
  }

  private keep(channelId: string, members: readonly MemberRecord[], at: number): void {
    if (this.opts.ttlMs <= 0 || members.length === 0 || members.length > this.opts.maxMembers) return;
    const old = this.kept.get(channelId);
    if (old) {
      this.kept.delete(channelId);
      this.size -= old.members.length;
    }
    this.kept.set(channelId, { members, at });
    this.size += members.length;
    // Map order is insertion order: the first entries are the oldest lists.
    for (const [id, k] of this.kept) {
      if (this.size <= this.opts.maxMembers) break;
      this.kept.delete(id);
      this.size -= k.members.length;
    }
  }
}

/** For events routed in from another server: a membership change forgets that channel's list. */
export function forgetOnMemberChange(lists: MemberLists): (event: ChatEvent) => void {
  return (event) => {
    if (event.event.case === "memberChange") lists.forget(event.event.value.channelId);
  };
}
