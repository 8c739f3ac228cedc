/**
 * ShortenerService over gRPC (public through the gateway): protobuf <-> Shortener use cases.
 * Owner = the authenticated caller (requireCaller); never a field of the request.
 * Refusals carry a LinkErrorDetail (reason + field) as a ConnectError detail, also sent as the
 * standard `grpc-status-details-bin` trailer (google.rpc.Status) over grpc-js.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import {
  BulkCreateLinksResponseSchema,
  CreateLinkResponseSchema,
  DeleteLinkResponseSchema,
  GetLinkResponseSchema,
  GetLinkStatsResponseSchema,
  LinkErrorDetailSchema,
  LinkErrorReason,
  LinkSchema,
  ListLinksResponseSchema,
  RedirectType as PbRedirectType,
  ShortenerService,
  UpdateLinkResponseSchema,
  type BulkCreateLinksResultSchema,
} from "../../gen/switchboard/shortener/v1/shortener_pb.js";
import type { DomainError } from "../../platform/errors.js";
import { codeForKind } from "../../platform/grpc/status.js";
import { requireCaller } from "../../platform/identity.js";
import { createClickStatsStore } from "../analytics/store.js";
import { updatedAtOf, versionOf, type Link, type RedirectType } from "../links/ports.js";
import { createLinkStore } from "../links/store.js";
import { cacheFence } from "../links/shared-cache.js";
import { grpcRangeSource, loadCodeKey } from "../tokenrange/index.js";
import type { ServiceModule } from "../module.js";
import { leasedCodeSource } from "./adapters/leased-code-source.js";
import { LinkError, badField } from "./domain/errors.js";
import { readBlocklist, readOwnHosts } from "./env.js";
import { Shortener, type BulkItem, type BulkItemResult } from "./service.js";

export const shortenerModule: ServiceModule = {
  name: "shortener",
  desc: ShortenerService,
  public: true,
  // Links live in Cassandra. Token-range down still leaves buffered codes, aliases and reads;
  // Redis down only refuses updates and deletes (the fence); NATS is best effort.
  needs: ["cassandra"],
  async create({ config, log, engine, upstreamAddress }) {
    const policy = { ownHosts: readOwnHosts(config.gateway.publicBaseUrl), blockedDomains: readBlocklist() };
    // Read at start so a cluster process without SWITCHBOARD_CODE_KEY stops with one clear line.
    const codeKey = loadCodeKey(engine.kind, log, { SWITCHBOARD_CODE_KEY: config.codeKey });
    // Ranges through the token-range service (mission: services talk over gRPC, ZooKeeper behind token-range).
    const codes = leasedCodeSource({ source: grpcRangeSource(upstreamAddress("tokenrange")), key: () => codeKey, log });
    const shortener = new Shortener({
      store: await createLinkStore(engine, log),
      codes,
      policy,
      bus: engine.bus,
      linkCache: cacheFence(engine.cache),
      stats: createClickStatsStore(engine, log),
      log,
    });
    return { impl: shortenerImpl(shortener), close: () => codes.close?.() ?? Promise.resolve() };
  },
};

/**
 * The handlers; exported for tests that build a Shortener on their own ports. Links leave
 * without short_url: the gateway owns the public base URL and fills it in (gateway/short-urls.ts).
 */
export function shortenerImpl(s: Shortener): Partial<ServiceImpl<typeof ShortenerService>> {
  const pb = (l: Link) => toPbLink(l);
  return {
    createLink: (req, ctx) =>
      guard(async () => {
        const owner = requireCaller(ctx).userId;
        const r = await s.create(
          owner,
          {
            longUrl: req.longUrl,
            ...(req.customAlias ? { customAlias: req.customAlias } : {}),
            ...(req.expireTime ? { expiresAt: dateOf(req.expireTime, "expire_time") } : {}),
            ...redirectTypeOf(req.redirectType, "redirect_type"),
          },
          req.idempotencyKey,
        );
        return create(CreateLinkResponseSchema, { link: pb(r.link), idempotentReplay: r.replay });
      }),
    getLink: (req, ctx) =>
      guard(async () => create(GetLinkResponseSchema, { link: pb(await s.get(requireCaller(ctx).userId, req.code)) })),
    listLinks: (req, ctx) =>
      guard(async () => {
        const page = await s.list(requireCaller(ctx).userId, req.pageSize, req.pageToken);
        return create(ListLinksResponseSchema, { links: page.links.map(pb), nextPageToken: page.nextPageToken ?? "" });
      }),
    updateLink: (req, ctx) =>
      guard(async () => {
        const owner = requireCaller(ctx).userId;
        const l = req.link;
        const paths = req.updateMask?.paths ?? [];
        const link = await s.update(owner, req.code, {
          paths,
          ...(l ? { longUrl: l.longUrl } : {}),
          ...(l?.expireTime && paths.includes("expire_time") ? { expiresAt: dateOf(l.expireTime, "link.expire_time") } : {}),
          ...(paths.includes("redirect_type") ? redirectTypeOf(l?.redirectType ?? PbRedirectType.UNSPECIFIED, "link.redirect_type") : {}),
          expectedVersion: Number(req.expectedVersion),
        });
        return create(UpdateLinkResponseSchema, { link: pb(link) });
      }),
    deleteLink: (req, ctx) =>
      guard(async () => {
        await s.delete(requireCaller(ctx).userId, req.code);
        return create(DeleteLinkResponseSchema, {});
      }),
    getLinkStats: (req, ctx) =>
      guard(async () => {
        const st = await s.stats(requireCaller(ctx).userId, req.code, req.days, req.topReferrers);
        return create(GetLinkStatsResponseSchema, {
          code: st.code,
          totalClicks: BigInt(st.total),
          humanClicks: BigInt(st.human),
          botClicks: BigInt(st.bot),
          daily: st.daily.map((d) => ({ date: d.date, totalClicks: BigInt(d.total), humanClicks: BigInt(d.human) })),
          referrers: st.referrers.map((r) => ({ referrer: r.referrer, humanClicks: BigInt(r.human) })),
          countries: st.countries.map((c) => ({ country: c.country, humanClicks: BigInt(c.human) })),
          asOfTime: timestampFromDate(st.asOf),
          ...(st.lag
            ? { pendingMessages: BigInt(st.lag.pendingMessages), pendingClicks: BigInt(st.lag.pendingClicks), lagReportTime: timestampFromDate(st.lag.reportedAt) }
            : {}),
        });
      }),
    bulkCreateLinks: (requests, ctx) =>
      guard(async () => {
        const owner = requireCaller(ctx).userId;
        const items = (async function* (): AsyncGenerator<BulkItem> {
          for await (const r of requests) {
            // Bad expire_time / redirect_type fail that item only: carry them as a thrower.
            let expiresAt: Date | undefined;
            let rt: { redirectType?: RedirectType } = {};
            let itemError: DomainError | undefined;
            try {
              if (r.expireTime) expiresAt = dateOf(r.expireTime, "expire_time");
              rt = redirectTypeOf(r.redirectType, "redirect_type");
            } catch (e) {
              itemError = e as DomainError;
            }
            const item: BulkItem = {
              itemId: r.itemId,
              longUrl: r.longUrl,
              ...(r.customAlias ? { customAlias: r.customAlias } : {}),
              ...(expiresAt ? { expiresAt } : {}),
              ...rt,
              ...(itemError ? { preError: itemError } : {}),
            };
            yield item;
          }
        })();
        const { results, truncated } = await s.bulk(owner, items);
        return create(BulkCreateLinksResponseSchema, bulkResponse(results, pb, truncated));
      }),
  };
}

/** The wire form of a bulk outcome. */
export function bulkResponse(
  results: readonly BulkItemResult[],
  pb: (l: Link) => MessageInitShape<typeof LinkSchema>,
  truncated: boolean,
): MessageInitShape<typeof BulkCreateLinksResponseSchema> {
  let succeeded = 0;
  const out: MessageInitShape<typeof BulkCreateLinksResultSchema>[] = results.map((r) => {
    if ("link" in r) {
      succeeded++;
      return { itemId: r.itemId, result: { case: "link", value: pb(r.link) } };
    }
    const e = r.error;
    return {
      itemId: r.itemId,
      result: {
        case: "error",
        value: {
          code: e.kind === "Internal" ? 13 : codeForKind(e.kind),
          message: e.message,
          reason: e instanceof LinkError && e.reason ? LinkErrorReason[e.reason] : LinkErrorReason.UNSPECIFIED,
        },
      },
    };
  });
  return { results: out, succeeded, failed: results.length - succeeded, truncated };
}

export function toPbLink(l: Link): MessageInitShape<typeof LinkSchema> {
  return {
    code: l.code,
    longUrl: l.longUrl,
    ownerId: l.ownerId,
    createTime: timestampFromDate(l.createdAt),
    updateTime: timestampFromDate(updatedAtOf(l)),
    ...(l.expiresAt ? { expireTime: timestampFromDate(l.expiresAt) } : {}),
    redirectType: l.redirectType === 301 ? PbRedirectType.PERMANENT : PbRedirectType.TEMPORARY,
    custom: l.custom ?? false,
    version: BigInt(versionOf(l)),
  };
}

function dateOf(ts: Timestamp, field: string): Date {
  const d = timestampDate(ts);
  if (!Number.isFinite(d.getTime())) throw new LinkError("InvalidArgument", "EXPIRE_TIME_INVALID", field, "is not a valid time");
  return d;
}

function redirectTypeOf(t: PbRedirectType, field: string): { redirectType?: RedirectType } {
  switch (t) {
    case PbRedirectType.UNSPECIFIED:
      return {};
    case PbRedirectType.PERMANENT:
      return { redirectType: 301 };
    case PbRedirectType.TEMPORARY:
      return { redirectType: 302 };
    default:
      throw badField(field, `unknown redirect type ${String(t)}`);
  }
}

/** Runs a handler, turning a LinkError into a ConnectError carrying a LinkErrorDetail. */
async function guard<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof LinkError && e.kind !== "Internal") throw withReason(e);
    throw e;
  }
}

export function withReason(e: LinkError): ConnectError {
  const err = new ConnectError(
    e.message,
    codeForKind(e.kind),
    undefined,
    [{ desc: LinkErrorDetailSchema, value: { reason: e.reason ? LinkErrorReason[e.reason] : LinkErrorReason.UNSPECIFIED, field: e.details.field ?? "" } }],
    e,
  );
  const bin = setTrailerStatus(new Headers(), err).get("grpc-status-details-bin");
  if (bin) err.metadata.set("grpc-status-details-bin", bin);
  return err;
}
