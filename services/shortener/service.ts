/**
 * The shortener's use cases on its ports (LinkStore, CodeSource, EventBus, ClickStatsStore).
 * Transport-neutral: module.ts maps protobuf messages to these calls and errors to statuses.
 *
 * Ownership: every operation takes the authenticated owner id; a link of someone else answers
 * NotFound, exactly like a missing one (existence is not revealed).
 * Idempotent creates: (owner, key) -> code for 24 h. The link is written first, then the key is
 * claimed atomically; a create that loses the claim to a concurrent twin deletes its own link
 * and answers the twin's (a crash between the two writes can at worst leave an orphan link).
 */
import { createHash } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { LinkChangeKind, LinkChangedSchema } from "../../gen/switchboard/events/v1/events_pb.js";
import { DomainError, isDomainError, notFound } from "../../platform/errors.js";
import type { EngineLog } from "../../platform/engines/log.js";
import type { EventBus } from "../../platform/ports/event-bus.js";
import type { ClickStatsStore } from "../analytics/ports.js";
import { updatedAtOf, versionOf, type Link, type LinkPage, type LinkStore, type RedirectType } from "../links/ports.js";
import { LinkError, badField, refuse } from "./domain/errors.js";
import {
  isPrintableKey,
  validateAlias,
  validateCode,
  validateExpiry,
  validateIdempotencyKey,
  validateLongUrl,
  type UrlPolicy,
} from "./domain/validate.js";
import type { LinkCacheFence } from "../links/shared-cache.js";
import type { CodeSource } from "./ports.js";

export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;
export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;
export const MAX_BULK_ITEMS = 10_000;
/** Longest item_id echoed back for an invalid item (valid ones are at most this long). */
export const MAX_ITEM_ID_ECHO = 128;
export const UPDATE_PATHS = ["long_url", "expire_time", "redirect_type"] as const;
export type UpdatePath = (typeof UPDATE_PATHS)[number];

export const linkChangedSubject = (code: string): string => `switchboard.links.changed.${code}`;

export interface CreateInput {
  readonly longUrl: string;
  readonly customAlias?: string;
  readonly expiresAt?: Date;
  /** undefined = default (302). */
  readonly redirectType?: RedirectType;
}

export interface UpdateInput {
  readonly paths: readonly string[];
  readonly longUrl?: string;
  /** undefined with "expire_time" in paths = remove the expiry. */
  readonly expiresAt?: Date;
  readonly redirectType?: RedirectType;
  /** 0 / undefined = no optimistic check. */
  readonly expectedVersion?: number;
}

export interface DailyStats {
  readonly date: string;
  readonly total: number;
  readonly human: number;
}

export interface LinkStats {
  readonly code: string;
  readonly total: number;
  readonly human: number;
  readonly bot: number;
  readonly daily: readonly DailyStats[];
  readonly referrers: readonly { readonly referrer: string; readonly human: number }[];
  readonly countries: readonly { readonly country: string; readonly human: number }[];
  /** Clicks up to this time are counted (see GetLinkStatsResponse.as_of_time). */
  readonly asOf: Date;
  /** The analytics consumer's last lag report; undefined when it never reported. */
  readonly lag?: { readonly pendingMessages: number; readonly pendingClicks: number; readonly reportedAt: Date };
}

export type BulkItemResult =
  | { readonly itemId: string; readonly link: Link }
  | { readonly itemId: string; readonly error: DomainError };

export interface BulkOutcome {
  readonly results: readonly BulkItemResult[];
  /** More than MAX_BULK_ITEMS items were sent: the results cover the first MAX_BULK_ITEMS. */
  readonly truncated: boolean;
}

export interface BulkItem extends CreateInput {
  readonly itemId: string;
  /** A decoding error of this item (bad expire_time, unknown redirect_type): fails the item only. */
  readonly preError?: DomainError;
}

export interface ShortenerDeps {
  readonly store: LinkStore;
  readonly codes: CodeSource;
  readonly policy: UrlPolicy;
  readonly bus?: EventBus;
  /**
   * The shared cache the redirect chain reads: an update or delete is fenced there before it is
   * made (Unavailable = nothing changed) and again before it is acknowledged, so an
   * acknowledged change never depends on the LinkChanged event arriving.
   */
  readonly linkCache?: LinkCacheFence;
  readonly stats?: ClickStatsStore;
  readonly log?: EngineLog;
  readonly now?: () => Date;
  /** Parallel creates per bulk stream (default 32). */
  readonly bulkConcurrency?: number;
}

export class Shortener {
  private readonly now: () => Date;

  constructor(private readonly deps: ShortenerDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  /** Validates everything first: nothing is stored for a refused request. */
  async create(owner: string, input: CreateInput, idempotencyKey = ""): Promise<{ link: Link; replay: boolean }> {
    const v = this.validateCreate(input);
    if (idempotencyKey !== "") validateIdempotencyKey(idempotencyKey);
    return this.createValidated(owner, v, idempotencyKey === "" ? undefined : `c:${idempotencyKey}`);
  }

  async get(owner: string, code: string): Promise<Link> {
    return this.owned(owner, code);
  }

  async list(owner: string, pageSize: number, pageToken: string): Promise<LinkPage> {
    if (!Number.isInteger(pageSize) || pageSize < 0 || pageSize > MAX_PAGE_SIZE) {
      throw badField("page_size", `must be 1-${MAX_PAGE_SIZE} (0 = ${DEFAULT_PAGE_SIZE})`);
    }
    return this.deps.store.listByOwner(owner, pageSize || DEFAULT_PAGE_SIZE, pageToken || undefined);
  }

  async update(owner: string, code: string, input: UpdateInput): Promise<Link> {
    validateCode(code);
    const paths = new Set<UpdatePath>();
    if (input.paths.length === 0) throw badField("update_mask", `is required: name at least one of ${UPDATE_PATHS.join(", ")}`);
    for (const p of input.paths) {
      if (!(UPDATE_PATHS as readonly string[]).includes(p)) {
        throw badField("update_mask", `unknown path "${p}"; allowed: ${UPDATE_PATHS.join(", ")}`);
      }
      paths.add(p as UpdatePath);
    }
    const now = this.now();
    const longUrl = paths.has("long_url") ? validateLongUrl(input.longUrl ?? "", this.deps.policy, "link.long_url") : undefined;
    const expiresAt = paths.has("expire_time") && input.expiresAt ? validateExpiry(input.expiresAt, now, "link.expire_time") : undefined;
    const expected = input.expectedVersion ?? 0;
    for (let attempt = 0; ; attempt++) {
      const cur = await this.owned(owner, code);
      const curVersion = versionOf(cur);
      if (expected !== 0 && curVersion !== expected) {
        throw new DomainError("FailedPrecondition", `expected_version: link is at version ${curVersion}, not ${expected}`, {
          field: "expected_version",
        });
      }
      if (attempt === 0) await this.deps.linkCache?.fence(code);
      const { expiresAt: _drop, ...rest } = cur;
      const keepExpiry = !paths.has("expire_time") && cur.expiresAt ? { expiresAt: cur.expiresAt } : {};
      const next: Link = {
        ...rest,
        ...keepExpiry,
        ...(expiresAt ? { expiresAt } : {}),
        ...(longUrl !== undefined ? { longUrl } : {}),
        ...(paths.has("redirect_type") ? { redirectType: input.redirectType ?? 302 } : {}),
        updatedAt: new Date(Math.max(now.getTime(), updatedAtOf(cur).getTime() + 1)),
        version: curVersion + 1,
        custom: cur.custom ?? false,
      };
      const r = await this.deps.store.update(next, curVersion);
      if (r.kind === "updated") {
        await this.fenceChanged(code);
        this.publish(code, LinkChangeKind.UPDATED, versionOf(r.link));
        return r.link;
      }
      if (r.kind === "not_found") throw notFound(`link "${code}"`);
      if (expected !== 0 || attempt >= 4) {
        throw new DomainError("FailedPrecondition", "expected_version: the link was changed concurrently; read it and retry", {
          field: "expected_version",
        });
      }
    }
  }

  async delete(owner: string, code: string): Promise<void> {
    const cur = await this.owned(owner, code);
    await this.deps.linkCache?.fence(code);
    if (!(await this.deps.store.delete(code, owner))) throw notFound(`link "${code}"`);
    await this.fenceChanged(code);
    this.publish(code, LinkChangeKind.DELETED, versionOf(cur) + 1);
  }

  async stats(owner: string, code: string, days: number, topReferrers: number): Promise<LinkStats> {
    validateCode(code);
    if (!Number.isInteger(days) || days < 0 || days > 90) throw badField("days", "must be 1-90 (0 = 30)");
    if (!Number.isInteger(topReferrers) || topReferrers < 0 || topReferrers > 100) {
      throw badField("top_referrers", "must be 1-100 (0 = 10)");
    }
    await this.owned(owner, code);
    if (!this.deps.stats) throw new DomainError("Unavailable", "click statistics are not available");
    const d = days || 30;
    const top = topReferrers || 10;
    const now = this.now();
    const s = await this.deps.stats.get(code, { days: d, now });
    const f = s.freshness;
    const byDay = new Map(s.perDay.map((x) => [x.day, x]));
    const daily: DailyStats[] = [];
    const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    for (let i = d - 1; i >= 0; i--) {
      const date = new Date(today - i * 86_400_000).toISOString().slice(0, 10);
      const x = byDay.get(date);
      daily.push({ date, total: x ? x.human + x.bot : 0, human: x ? x.human : 0 });
    }
    return {
      code,
      total: s.total,
      human: s.human,
      bot: s.bot,
      daily,
      referrers: s.perReferrer.slice(0, top).map((r) => ({ referrer: r.referrer, human: r.human })),
      countries: s.perCountry.map((c) => ({ country: c.country, human: c.human })),
      asOf: s.asOf ?? (f ? (f.oldestPending ?? f.at) : now),
      ...(f ? { lag: { pendingMessages: f.pendingMessages, pendingClicks: f.pendingClicks, reportedAt: f.at } } : {}),
    };
  }

  /**
   * Bulk create: one result per item in order. Items run `bulkConcurrency` at a time; item_id
   * is validated (1..128 printable ASCII, unique in the stream) and is the item's idempotency
   * key. At most `MAX_BULK_ITEMS`: the 10,001st item ends the reading, unprocessed, and the
   * answer, with `truncated`, reports every item processed, so nothing stored goes unreported.
   */
  async bulk(owner: string, items: AsyncIterable<BulkItem>): Promise<BulkOutcome> {
    const limit = this.deps.bulkConcurrency ?? 32;
    const seen = new Set<string>();
    const results: Promise<BulkItemResult>[] = [];
    const inFlight = new Set<Promise<unknown>>();
    let truncated = false;
    for await (const item of items) {
      if (results.length >= MAX_BULK_ITEMS) {
        truncated = true;
        break;
      }
      const { itemId } = item;
      let p: Promise<BulkItemResult>;
      if (!isPrintableKey(itemId)) {
        // Echo cut short: a stream of huge invalid ids must not pile up in the answer.
        const echo = itemId.slice(0, MAX_ITEM_ID_ECHO);
        p = Promise.resolve({ itemId: echo, error: refuse("ITEM_ID_INVALID", "item_id", "must be 1-128 printable ASCII characters") });
      } else if (seen.has(itemId)) {
        p = Promise.resolve({ itemId, error: refuse("ITEM_ID_INVALID", "item_id", "duplicates an earlier item of this stream") });
      } else {
        seen.add(itemId);
        p = this.bulkItem(owner, item);
        const tracked = p.finally(() => inFlight.delete(tracked));
        inFlight.add(tracked);
        if (inFlight.size >= limit) await Promise.race(inFlight);
      }
      results.push(p);
    }
    return { results: await Promise.all(results), truncated };
  }

  private async bulkItem(owner: string, item: BulkItem): Promise<BulkItemResult> {
    try {
      if (item.preError) throw item.preError;
      const v = this.validateCreate(item);
      const { link } = await this.createValidated(owner, v, `b:${item.itemId}`);
      return { itemId: item.itemId, link };
    } catch (e) {
      if (isDomainError(e)) return { itemId: item.itemId, error: e };
      this.deps.log?.error({ err: e }, "bulk item failed");
      return { itemId: item.itemId, error: new DomainError("Internal", "internal error") };
    }
  }

  private validateCreate(input: CreateInput): Required<Pick<CreateInput, "longUrl" | "redirectType">> & CreateInput {
    const now = this.now();
    const longUrl = validateLongUrl(input.longUrl, this.deps.policy);
    const customAlias = input.customAlias ? validateAlias(input.customAlias) : undefined;
    const expiresAt = input.expiresAt ? validateExpiry(input.expiresAt, now) : undefined;
    return {
      longUrl,
      redirectType: input.redirectType ?? 302,
      ...(customAlias ? { customAlias } : {}),
      ...(expiresAt ? { expiresAt } : {}),
    };
  }

  private async createValidated(
    owner: string,
    v: Required<Pick<CreateInput, "longUrl" | "redirectType">> & CreateInput,
    key: string | undefined,
  ): Promise<{ link: Link; replay: boolean }> {
    const hash = key ? requestHash(v) : "";
    if (key) {
      const rec = await this.deps.store.getIdempotencyKey(owner, key);
      if (rec) return { link: await this.replay(owner, rec, hash), replay: true };
    }
    const now = this.now();
    const base = {
      longUrl: v.longUrl,
      ownerId: owner,
      createdAt: now,
      updatedAt: now,
      ...(v.expiresAt ? { expiresAt: v.expiresAt } : {}),
      redirectType: v.redirectType,
      version: 1,
    };
    let link: Link;
    if (v.customAlias) {
      link = { code: v.customAlias, ...base, custom: true };
      if (!(await this.deps.store.insertIfAbsent(link))) {
        const rec = key ? await this.deps.store.getIdempotencyKey(owner, key) : undefined;
        if (rec) return { link: await this.replay(owner, rec, hash), replay: true };
        throw new LinkError("AlreadyExists", "ALIAS_TAKEN", "custom_alias", `"${v.customAlias}" is already in use`);
      }
      this.publish(link.code, LinkChangeKind.CREATED, 1);
    } else {
      link = { code: await this.deps.codes.next(), ...base, custom: false };
      await this.deps.store.insertUnique(link);
    }
    if (key) {
      const r = await this.deps.store.reserveIdempotencyKey(owner, key, { code: link.code, requestHash: hash }, IDEMPOTENCY_TTL_MS);
      if (!r.reserved && r.record.code !== link.code) {
        // A concurrent twin claimed the key first: undo ours, answer theirs.
        await this.deps.store.delete(link.code, owner).catch((e: unknown) => this.deps.log?.warn({ err: e, code: link.code }, "orphan link left"));
        return { link: await this.replay(owner, r.record, hash), replay: true };
      }
    }
    return { link, replay: false };
  }

  private async replay(owner: string, rec: { code: string; requestHash: string }, hash: string): Promise<Link> {
    if (rec.requestHash !== hash) {
      throw new LinkError("FailedPrecondition", "IDEMPOTENCY_KEY_REUSED", "idempotency_key", "was used before with different parameters");
    }
    const link = await this.deps.store.get(rec.code);
    if (!link || link.ownerId !== owner) throw notFound(`link "${rec.code}" created with this idempotency key (deleted since)`);
    return link;
  }

  /** The owner's link, or NotFound (also for someone else's link). */
  private async owned(owner: string, code: string): Promise<Link> {
    validateCode(code);
    const link = await this.deps.store.get(code);
    if (!link || link.ownerId !== owner) throw notFound(`link "${code}"`);
    return link;
  }

  /**
   * The fence after a change made: a reader may have read the old row between the first fence
   * and the write. Failing here (the cache went away mid-call) answers Unavailable although the
   * change is stored: the caller retries, and the retry fences again.
   */
  private async fenceChanged(code: string): Promise<void> {
    try {
      await this.deps.linkCache?.fence(code);
    } catch (e) {
      this.deps.log?.error({ err: e, code }, "link changed but its shared cache entry could not be fenced");
      throw new DomainError("Unavailable", `link "${code}" was changed, but the shared link cache could not be cleared; retry the call`, { retryAfterMs: 1_000 }, { cause: e });
    }
  }

  /** Fire-and-forget LinkChanged on switchboard.links.changed.<code>. */
  private publish(code: string, kind: LinkChangeKind, version: number): void {
    if (!this.deps.bus) return;
    try {
      const msg = create(LinkChangedSchema, { code, kind, version: BigInt(version), time: timestampFromDate(this.now()) });
      this.deps.bus.publish(linkChangedSubject(code), toBinary(LinkChangedSchema, msg));
    } catch (e) {
      this.deps.log?.warn({ err: e, code }, "LinkChanged not published");
    }
  }
}

function requestHash(v: CreateInput): string {
  return createHash("sha256")
    .update(JSON.stringify([v.longUrl, v.customAlias ?? "", v.expiresAt?.getTime() ?? null, v.redirectType ?? 302]))
    .digest("base64url");
}
