/**
 * Who may do what in a channel. Pure rules on roles; the use cases read the members and ask.
 * Owner hand-over: when the owner leaves, the longest-standing remaining member (smallest
 * joinedId, so the same answer on every server) becomes owner.
 */
import type { ChannelType, MemberRecord, Role } from "../ports.js";

export const canManageMembers = (role: Role): boolean => role === "owner" || role === "admin";

/** An admin cannot remove the owner; nobody removes themself (that is leaving). */
export function canRemove(actor: Role, target: Role): boolean {
  if (!canManageMembers(actor)) return false;
  return !(target === "owner" && actor !== "owner");
}

/** The sender always; in groups also the owner and admins (moderation). */
export function canDeleteMessage(type: ChannelType, actor: Role, isSender: boolean): boolean {
  return isSender || (type === "group" && canManageMembers(actor));
}

/** The new owner when `leaving` (the owner) leaves; undefined when nobody remains. */
export function successorOf(members: readonly MemberRecord[], leaving: string): MemberRecord | undefined {
  let best: MemberRecord | undefined;
  for (const m of members) {
    if (m.userId === leaving) continue;
    if (!best || m.joinedId < best.joinedId) best = m;
  }
  return best;
}
