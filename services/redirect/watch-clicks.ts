/**
 * WatchClicks: live clicks streamed to the owner of the links clicked.
 *
 * One hub per process holds every open stream. It has one bus subscription (taken while at
 * least one stream is open), decodes each ClickBatch once and dispatches each click by code
 * (single-code streams) and by the clicked link's owner (all-links streams), so the
 * cost of a click does not grow with the number of streams other callers hold open.
 *
 * Authorisation is checked on delivery, not once at open, against the link the click was on:
 * - A stamped click (the gateway's redirect door names the link it redirected through: owner
 *   + creation time) belongs to that link, whatever the code names when it arrives. On the
 *   cluster engine LinkChanged (from the shortener) and the click (from a gateway) travel
 *   independently, so the hub's cache may not yet know that alice's x was deleted and bob's x
 *   registered when bob's click comes in; the stamp still says it is bob's.
 * - An unstamped click (from an older gateway) is looked up in the LinkResolver (invalidated by
 *   LinkChanged) just before it is handed out.
 * - An all-links stream gets a click only when it was on one of the caller's links.
 * - A single-code stream is bound to the link it was opened on (owner + creation time) and gets
 *   a click only when it was on that link. When the link stops being there (deleted, or deleted
 *   and registered again, by anyone) the stream ends with NotFound: on the LinkChanged event, or
 *   on the next click on another link. The end itself is confirmed against the store, so a
 *   lagging cache (here or at the gateway) can withhold a click but never ends a stream whose
 *   link is still there.
 *
 * Bounded: at most `maxPerCaller` streams per caller (ResourceExhausted beyond), `queueMax`
 * undelivered clicks per stream (a slow reader loses live clicks rather than growing), and
 * `backlogMax` clicks waiting for their owner lookup in the hub.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { ClickBatchSchema, ClickEventSchema, type ClickEvent } from "../../gen/switchboard/events/v1/events_pb.js";
import { WatchClicksResponseSchema, type WatchClicksResponse } from "../../gen/switchboard/redirect/v1/redirect_pb.js";
import { DomainError, notFound } from "../../platform/errors.js";
import type { BusMessage, EventBus, Unsubscribe } from "../../platform/ports/event-bus.js";
import type { Link, LinkStore } from "../links/ports.js";
import { validateCode } from "./resolve.js";
import type { LinkResolver, Lookup } from "./resolver.js";
import { CLICKS_ALL, isClickBatchSubject } from "./subjects.js";

/** Clicks whose links are looked up together. */
const DRAIN_CHUNK = 256;

export interface ClickWatchHubOptions {
  /** Concurrent WatchClicks streams per caller. */
  readonly maxPerCaller: number;
  /** Undelivered clicks kept per stream. Default 1,000. */
  readonly queueMax?: number;
  /** Clicks waiting in the hub for their owner lookup. Default 10,000. */
  readonly backlogMax?: number;
  readonly onError?: (what: string, err: unknown) => void;
}

/** The link a single-code stream was opened on. */
export interface LinkIdentity {
  readonly code: string;
  readonly ownerId: string;
  readonly createdAtMs: number;
}

export interface ClickWatchStats {
  /** Clicks taken from the bus while someone watched. */
  received: number;
  /** Clicks handed to streams (one per stream). */
  delivered: number;
  /** Clicks lost to a full stream queue or a full hub backlog. */
  dropped: number;
  /** Single-code streams ended because their link went away. */
  ended: number;
}

class Watcher {
  private readonly queue: ClickEvent[] = [];
  private wake: (() => void) | undefined;
  private failure: DomainError | undefined;

  constructor(
    readonly link: LinkIdentity | undefined,
    private readonly queueMax: number,
  ) {}

  /** False when the queue is full (the click is dropped). */
  push(click: ClickEvent): boolean {
    if (this.failure || this.queue.length >= this.queueMax) return false;
    this.queue.push(click);
    this.wake?.();
    return true;
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  fail(err: DomainError): void {
    this.failure ??= err;
    this.wake?.();
  }

  async *clicks(signal: AbortSignal): AsyncGenerator<ClickEvent> {
    const aborted = new Promise<void>((r) => {
      if (signal.aborted) r();
      else signal.addEventListener("abort", () => r(), { once: true });
    });
    while (!signal.aborted) {
      // What was queued before a failure was authorised when queued; the failure comes after it.
      const next = this.queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.failure) throw this.failure;
      await Promise.race([new Promise<void>((r) => (this.wake = r)), aborted]);
      this.wake = undefined;
    }
  }
}

export class ClickWatchHub {
  readonly stats: ClickWatchStats = { received: 0, delivered: 0, dropped: 0, ended: 0 };
  private readonly byCode = new Map<string, Set<Watcher>>();
  private readonly byOwner = new Map<string, Set<Watcher>>();
  private readonly perCaller = new Map<string, number>();
  private open = 0;
  private unsubscribe: Unsubscribe | undefined;
  private readonly offInvalidate: () => void;
  private backlog: ClickEvent[] = [];
  private backlogHead = 0;
  private draining = false;
  /** JetStream publish retries may reach core subscribers twice: dedupe by event id (bounded). */
  private readonly seen = new Set<string>();
  private readonly queueMax: number;
  private readonly backlogMax: number;
  private readonly onError: (what: string, err: unknown) => void;

  constructor(
    private readonly bus: EventBus,
    private readonly resolver: LinkResolver,
    private readonly store: LinkStore,
    private readonly opts: ClickWatchHubOptions,
  ) {
    this.queueMax = opts.queueMax ?? 1_000;
    this.backlogMax = opts.backlogMax ?? 10_000;
    this.onError = opts.onError ?? (() => {});
    this.offInvalidate = resolver.onInvalidate((code) => {
      if (this.byCode.has(code)) void this.recheck(code);
    });
  }

  /** Streams open now (all callers). */
  get size(): number {
    return this.open;
  }

  /**
   * Registers a stream for `callerId`: all its links, or the one `link` (already checked to be
   * the caller's). Throws ResourceExhausted beyond the per-caller cap. Call the returned
   * `close` when the stream ends.
   */
  watch(callerId: string, link?: LinkIdentity): { clicks(signal: AbortSignal): AsyncGenerator<ClickEvent>; close(): void } {
    const count = this.perCaller.get(callerId) ?? 0;
    if (count >= this.opts.maxPerCaller) {
      throw new DomainError(
        "ResourceExhausted",
        `too many WatchClicks streams for this caller: at most ${this.opts.maxPerCaller} at once; close one first`,
      );
    }
    const w = new Watcher(link, this.queueMax);
    this.perCaller.set(callerId, count + 1);
    addTo(link ? this.byCode : this.byOwner, link ? link.code : callerId, w);
    this.open++;
    this.unsubscribe ??= this.bus.subscribe(CLICKS_ALL, (msg) => this.onMessage(msg));
    let closed = false;
    return {
      clicks: (signal) => w.clicks(signal),
      close: () => {
        if (closed) return;
        closed = true;
        removeFrom(link ? this.byCode : this.byOwner, link ? link.code : callerId, w);
        const left = (this.perCaller.get(callerId) ?? 1) - 1;
        if (left === 0) this.perCaller.delete(callerId);
        else this.perCaller.set(callerId, left);
        if (--this.open === 0) {
          // Nobody watches: stop decoding clicks at all.
          this.unsubscribe?.();
          this.unsubscribe = undefined;
          this.backlog = [];
          this.backlogHead = 0;
        }
      },
    };
  }

  close(): void {
    this.offInvalidate();
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    for (const set of [...this.byCode.values(), ...this.byOwner.values()]) {
      for (const w of set) w.fail(new DomainError("Unavailable", "the redirect service is shutting down; reconnect"));
    }
  }

  private onMessage(msg: BusMessage): void {
    if (this.open === 0) return;
    let clicks: readonly ClickEvent[];
    try {
      clicks = isClickBatchSubject(msg.subject)
        ? fromBinary(ClickBatchSchema, msg.data).clicks
        : [fromBinary(ClickEventSchema, msg.data)];
    } catch (e) {
      this.onError("decode click", e);
      return;
    }
    for (const click of clicks) {
      if (this.byOwner.size === 0 && !this.byCode.has(click.code)) continue;
      this.stats.received++;
      if (this.backlog.length - this.backlogHead >= this.backlogMax) {
        this.stats.dropped++;
        continue;
      }
      this.backlog.push(click);
    }
    if (!this.draining) void this.drain();
  }

  /**
   * In arrival order, each click authorised against the link as it is just before delivery.
   * Lookups of a chunk run together (a cold code costs a database read; one at a time would
   * cap the hub at one click per read), dispatch stays in order.
   */
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.backlogHead < this.backlog.length) {
        const chunk = this.backlog.slice(this.backlogHead, this.backlogHead + DRAIN_CHUNK);
        this.backlogHead += chunk.length;
        if (this.backlogHead > 1_024 && this.backlogHead * 2 > this.backlog.length) {
          this.backlog = this.backlog.slice(this.backlogHead);
          this.backlogHead = 0;
        }
        const fresh = chunk.filter((click) => {
          if (this.seen.has(click.eventId)) return false;
          this.seen.add(click.eventId);
          if (this.seen.size > 4_096) this.seen.delete(this.seen.values().next().value!);
          return true;
        });
        const links = fresh.map((click) => stampOf(click) ?? this.resolver.peek(click.code) ?? this.lookup(click.code));
        const pending = links.some((l) => l instanceof Promise);
        const resolved = pending ? await Promise.all(links) : (links as (ClickedLink | Lookup | undefined)[]);
        for (const [i, click] of fresh.entries()) this.dispatch(click, resolved[i]);
      }
    } finally {
      this.draining = false;
    }
  }

  /** undefined when the link cannot be looked up now (database down): the click goes to nobody. */
  private lookup(code: string): Promise<Lookup | undefined> {
    return this.resolver.resolve(code).catch((e: unknown) => {
      this.onError("resolve for WatchClicks", e);
      return undefined;
    });
  }

  /**
   * `link`: the link the click was on (its stamp, or the resolver's answer for an unstamped
   * click); undefined when that is unknown (lookup failed): the click goes to nobody.
   */
  private dispatch(click: ClickEvent, link: ClickedLink | Lookup | undefined): void {
    // Internal, never shown to link owners (the stamp was read in drain).
    click.gatewayId = "";
    click.linkOwnerId = "";
    click.linkCreateTimeMs = 0n;
    const single = this.byCode.get(click.code);
    if (single && link !== undefined) {
      for (const w of single) {
        // A mismatch gets nothing; the store, not a cache that may lag, decides whether it ends.
        if (sameLink(w.link!, link)) this.deliver(w, click);
        else void this.confirmGone(w);
      }
    }
    if (link?.found) {
      const owners = this.byOwner.get(link.ownerId);
      if (owners) for (const w of owners) this.deliver(w, click);
    }
  }

  private deliver(w: Watcher, click: ClickEvent): void {
    if (w.push(click)) this.stats.delivered++;
    else this.stats.dropped++;
  }

  private end(w: Watcher): void {
    if (w.failed) return;
    this.stats.ended++;
    w.fail(notFound(`link "${w.link!.code}"`));
  }

  private async confirmGone(w: Watcher): Promise<void> {
    const stored = await this.stored(w.link!.code);
    if (stored !== "unknown" && !sameStored(w.link!, stored)) this.end(w);
  }

  /** After a LinkChanged: ends the single-code streams whose link is gone or replaced. */
  private async recheck(code: string): Promise<void> {
    const stored = await this.stored(code);
    if (stored === "unknown") return;
    for (const w of this.byCode.get(code) ?? []) if (!sameStored(w.link!, stored)) this.end(w);
  }

  private stored(code: string): Promise<Link | undefined | "unknown"> {
    return this.store.get(code).catch((e: unknown) => {
      this.onError("read link for WatchClicks", e);
      return "unknown" as const;
    });
  }
}

/** The link a click was on, by its stamp (found: it existed when the gateway redirected). */
interface ClickedLink {
  readonly found: true;
  readonly ownerId: string;
  readonly createdAtMs: number;
}

/** undefined for an unstamped click (published by a gateway that predates the stamp). */
function stampOf(click: ClickEvent): ClickedLink | undefined {
  if (click.linkOwnerId === "") return undefined;
  return { found: true, ownerId: click.linkOwnerId, createdAtMs: Number(click.linkCreateTimeMs) };
}

function sameLink(bound: LinkIdentity, clicked: ClickedLink | Lookup): boolean {
  return clicked.found && clicked.ownerId === bound.ownerId && clicked.createdAtMs === bound.createdAtMs;
}

function sameStored(bound: LinkIdentity, link: Link | undefined): boolean {
  return link !== undefined && link.ownerId === bound.ownerId && link.createdAt.getTime() === bound.createdAtMs;
}

function addTo(index: Map<string, Set<Watcher>>, key: string, w: Watcher): void {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(w);
}

function removeFrom(index: Map<string, Set<Watcher>>, key: string, w: Watcher): void {
  const set = index.get(key);
  if (!set) return;
  set.delete(w);
  if (set.size === 0) index.delete(key);
}

/**
 * The WatchClicks handler: a single-code stream is opened only on a link the caller owns now
 * (someone else's link is indistinguishable from an unknown one), then fed by the hub.
 */
export function watchClicksHandler(deps: { store: LinkStore; hub: ClickWatchHub }) {
  return async function* watchClicks(
    req: { code: string },
    callerId: string,
    signal: AbortSignal,
  ): AsyncGenerator<WatchClicksResponse> {
    let link: LinkIdentity | undefined;
    if (req.code !== "") {
      const code = validateCode(req.code);
      const stored = await deps.store.get(code);
      if (!stored || stored.ownerId !== callerId) throw notFound(`link "${code}"`);
      link = { code, ownerId: stored.ownerId, createdAtMs: stored.createdAt.getTime() };
    }
    const stream = deps.hub.watch(callerId, link);
    try {
      for await (const click of stream.clicks(signal)) yield create(WatchClicksResponseSchema, { click });
    } finally {
      stream.close();
    }
  };
}
