/**
 * ShortenerService through a real gRPC server (startGrpcServer + createGrpcClient), shared by
 * the memory-engine unit test and the cluster-engine integration test.
 */
import { randomUUID } from "node:crypto";
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { FieldMaskSchema, timestampFromDate, timestampDate, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LinkChangeKind, LinkChangedSchema } from "../../gen/switchboard/events/v1/events_pb.js";
import {
  LinkErrorDetailSchema,
  LinkErrorReason,
  RedirectType,
  ShortenerService,
  type BulkCreateLinksRequestSchema,
} from "../../gen/switchboard/shortener/v1/shortener_pb.js";
import { loadConfig } from "../../platform/config.js";
import type { Engine } from "../../platform/engine.js";
import { createGrpcClient, type GrpcClient } from "../../platform/grpc/client.js";
import { grpcService, startGrpcServer, type RunningGrpcServer } from "../../platform/grpc/server.js";
import { verifiedIdentity } from "../../platform/grpc/verified-identity.js";
import { actingAs, signingClient, testMeshKey } from "../../testkit/mesh-identity.js";
import { createClickStatsStore } from "../analytics/store.js";
import { RESERVED_WORDS } from "../links/code-grammar.js";
import { createLinkStore } from "../links/store.js";
import { shortenerModule } from "./module.js";
import { TokenRangeService } from "../../gen/switchboard/tokenrange/v1/tokenrange_pb.js";
import { tokenrangeModule } from "../tokenrange/module.js";

export interface SuiteFixture {
  readonly engine: Engine;
  readonly env: Record<string, string>;
  cleanup(): Promise<void>;
}

const BASE = "https://sb.example";

export function shortenerSuite(name: string, open: () => Promise<SuiteFixture>): void {
  describe(`ShortenerService over gRPC (${name} engine)`, () => {
    let fx: SuiteFixture;
    let server: RunningGrpcServer;
    let client: GrpcClient<typeof ShortenerService>;
    let closeModule: (() => Promise<void>) | undefined;
    let tokenrange: RunningGrpcServer | undefined;
    let closeTokenrange: (() => Promise<void>) | undefined;
    const events: { subject: string; kind: LinkChangeKind; version: bigint; code: string }[] = [];
    let unsubscribe: (() => void) | undefined;

    beforeAll(async () => {
      fx = await open();
      const config = loadConfig({ ...fx.env, SWITCHBOARD_PUBLIC_BASE_URL: BASE });
      const log = pino({ level: "silent" });
      // Code ranges come from a real token-range server over gRPC, as in production.
      const tr = await tokenrangeModule.create({ config, log, engine: fx.engine, upstreamAddress: () => "" });
      closeTokenrange = tr.close?.bind(tr);
      tokenrange = await startGrpcServer({ services: [grpcService(TokenRangeService, tr.impl)], port: 0, log });
      const trAddress = `127.0.0.1:${tokenrange.port}`;
      const running = await shortenerModule.create({
        config,
        log,
        engine: fx.engine,
        upstreamAddress: (n) => {
          if (n !== "tokenrange") throw new Error(`unexpected upstream ${n}`);
          return trAddress;
        },
      });
      closeModule = running.close?.bind(running);
      server = await startGrpcServer({ services: [grpcService(ShortenerService, running.impl)], port: 0, log, contextValues: verifiedIdentity(testMeshKey) });
      // Calls carry the gateway's proof of the caller: an assertion signed per method.
      client = signingClient(createGrpcClient(ShortenerService, `127.0.0.1:${server.port}`, { defaultTimeoutMs: 30_000 }), ShortenerService);
      unsubscribe = fx.engine.bus.subscribe("switchboard.links.changed.>", (m) => {
        const e = fromBinary(LinkChangedSchema, m.data);
        events.push({ subject: m.subject, kind: e.kind, version: e.version, code: e.code });
      });
    });
    afterAll(async () => {
      unsubscribe?.();
      client?.close();
      await server?.shutdown(1_000);
      await closeModule?.();
      await tokenrange?.shutdown(1_000);
      await closeTokenrange?.();
      await fx?.cleanup();
    });

    const as = (userId: string) => actingAs(userId);
    const user = () => `u-${randomUUID().slice(0, 8)}`;
    const failure = async (p: Promise<unknown>): Promise<ConnectError> => {
      const e = await p.then(() => undefined, (err: unknown) => err);
      expect(e).toBeInstanceOf(ConnectError);
      return e as ConnectError;
    };
    const reasonOf = (e: ConnectError): LinkErrorReason | undefined =>
      findTrailerError(e.metadata)?.findDetails(LinkErrorDetailSchema)[0]?.reason;
    const waitFor = async (what: () => boolean): Promise<void> => {
      for (let i = 0; i < 200 && !what(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(what()).toBe(true);
    };

    it("refuses calls without a caller (UNAUTHENTICATED)", async () => {
      const e = await failure(client.createLink({ longUrl: "https://example.com/" }));
      expect(e.code).toBe(Code.Unauthenticated);
      expect((await failure(client.listLinks({}))).code).toBe(Code.Unauthenticated);
    });

    it("creates a generated 7-char code owned by the caller, with defaults", async () => {
      const u = user();
      const { link, idempotentReplay } = await client.createLink({ longUrl: "https://Example.com/a?b=1" }, as(u));
      expect(idempotentReplay).toBe(false);
      expect(link!.code).toMatch(/^[0-9A-Za-z]{7}$/);
      // The gateway fills short_url (gateway/short-urls.ts); the shortener's base URL plays no part.
      expect(link!.shortUrl).toBe("");
      expect(link!.longUrl).toBe("https://example.com/a?b=1");
      expect(link!.ownerId).toBe(u);
      expect(link!.redirectType).toBe(RedirectType.TEMPORARY);
      expect(link!.custom).toBe(false);
      expect(link!.version).toBe(1n);
      expect(link!.expireTime).toBeUndefined();
      const got = await client.getLink({ code: link!.code }, as(u));
      expect(got.link).toEqual(link);
      const stored = await (await createLinkStore(fx.engine)).get(link!.code);
      expect(stored?.ownerId).toBe(u);
      // consecutive codes are distinct and not sequential-looking
      const more = await Promise.all(Array.from({ length: 20 }, () => client.createLink({ longUrl: "https://example.com/" }, as(u))));
      expect(new Set([link!.code, ...more.map((r) => r.link!.code)]).size).toBe(21);
    });

    it("creates a custom alias; a duplicate is ALREADY_EXISTS / ALIAS_TAKEN; creation publishes CREATED", async () => {
      const a = user();
      const alias = `promo-${randomUUID().slice(0, 6)}`;
      const exp = new Date(Date.now() + 86_400_000);
      const { link } = await client.createLink(
        { longUrl: "https://example.org/x", customAlias: alias, expireTime: timestampFromDate(exp), redirectType: RedirectType.PERMANENT },
        as(a),
      );
      expect(link!.code).toBe(alias);
      expect(link!.custom).toBe(true);
      expect(link!.redirectType).toBe(RedirectType.PERMANENT);
      expect(timestampDate(link!.expireTime!).getTime()).toBe(exp.getTime());
      await waitFor(() => events.some((e) => e.code === alias && e.kind === LinkChangeKind.CREATED));
      expect(events.find((e) => e.code === alias)!.subject).toBe(`switchboard.links.changed.${alias}`);
      for (const who of [a, user()]) {
        const e = await failure(client.createLink({ longUrl: "https://evil.example/", customAlias: alias }, as(who)));
        expect(e.code).toBe(Code.AlreadyExists);
        expect(reasonOf(e)).toBe(LinkErrorReason.ALIAS_TAKEN);
      }
      expect((await client.getLink({ code: alias }, as(a))).link!.longUrl).toBe("https://example.org/x");
    });

    it("an alias differing only in case is ALREADY_EXISTS / ALIAS_TAKEN, also when two race; the loser stores nothing", async () => {
      const alias = `bob-secret-${randomUUID().slice(0, 6)}`;
      await client.createLink({ longUrl: "https://example.org/bob", customAlias: alias }, as("case-bob"));
      const e = await failure(client.createLink({ longUrl: "https://evil.example/", customAlias: `Bob-Secret-${alias.slice(11)}` }, as("case-eve")));
      expect(e.code).toBe(Code.AlreadyExists);
      expect(reasonOf(e)).toBe(LinkErrorReason.ALIAS_TAKEN);
      const race = `race-case-${randomUUID().slice(0, 6)}`;
      const racers = [race, race.toUpperCase(), `Race-${race.slice(5)}`];
      const settled = await Promise.allSettled(racers.map((c, i) => client.createLink({ longUrl: `https://example.org/r${i}`, customAlias: c }, as(`racer-${i}`))));
      expect(settled.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      for (const r of settled) if (r.status === "rejected") expect((r.reason as ConnectError).code).toBe(Code.AlreadyExists);
      const winner = settled.findIndex((r) => r.status === "fulfilled");
      for (const [i, c] of racers.entries()) {
        if (i === winner) continue;
        expect((await client.listLinks({}, as(`racer-${i}`))).links).toEqual([]);
        expect((await failure(client.getLink({ code: c }, as(`racer-${i}`)))).code).toBe(Code.NotFound);
      }
    });

    it("refuses every reserved word of the links grammar as an alias, in any case, with ALIAS_RESERVED", async () => {
      const u = user();
      const refusedOtherwise: string[] = [];
      for (const word of RESERVED_WORDS) {
        for (const alias of [word, word.charAt(0).toUpperCase() + word.slice(1)]) {
          const e = await failure(client.createLink({ longUrl: "https://example.com/", customAlias: alias }, as(u)));
          if (e.code !== Code.InvalidArgument || reasonOf(e) !== LinkErrorReason.ALIAS_RESERVED || !/^custom_alias: .*reserved/.test(e.rawMessage)) {
            refusedOtherwise.push(`${alias}: ${Code[e.code]} ${reasonOf(e)} ${e.rawMessage}`);
          }
        }
      }
      expect(refusedOtherwise).toEqual([]);
      expect((await client.listLinks({}, as(u))).links).toEqual([]);
    });

    it("refuses invalid input with a reason and stores nothing", async () => {
      const u = user();
      const cases: [Parameters<typeof client.createLink>[0], LinkErrorReason][] = [
        [{ longUrl: "javascript:alert(1)" }, LinkErrorReason.URL_SCHEME_NOT_ALLOWED],
        [{ longUrl: "https://user:pw@example.com/" }, LinkErrorReason.URL_HAS_CREDENTIALS],
        [{ longUrl: `${BASE}/abc1234` }, LinkErrorReason.URL_SELF_REFERENCE],
        [{ longUrl: "https://sub.testsafebrowsing.appspot.com/" }, LinkErrorReason.URL_DOMAIN_BLOCKED],
        [{ longUrl: `https://example.com/${"x".repeat(3000)}` }, LinkErrorReason.URL_TOO_LONG],
        [{ longUrl: "https://example.com/", customAlias: "abC1234" }, LinkErrorReason.ALIAS_INVALID],
        [{ longUrl: "https://example.com/", customAlias: "../../etc" }, LinkErrorReason.ALIAS_INVALID],
        [{ longUrl: "https://example.com/", customAlias: "ReadyZ" }, LinkErrorReason.ALIAS_RESERVED],
        [{ longUrl: "https://example.com/", customAlias: "admin" }, LinkErrorReason.ALIAS_RESERVED],
        [{ longUrl: "https://example.com/", expireTime: timestampFromDate(new Date(Date.now() - 1000)) }, LinkErrorReason.EXPIRE_TIME_INVALID],
        [{ longUrl: "https://example.com/", expireTime: timestampFromDate(new Date(Date.now() + 11 * 366 * 86_400_000)) }, LinkErrorReason.EXPIRE_TIME_INVALID],
      ];
      for (const [req, reason] of cases) {
        const e = await failure(client.createLink(req, as(u)));
        expect(e.code, `${req.longUrl?.slice(0, 40)} ${req.customAlias ?? ""}`).toBe(Code.InvalidArgument);
        expect(reasonOf(e), `${req.longUrl?.slice(0, 40)} ${req.customAlias ?? ""}`).toBe(reason);
        expect(e.rawMessage.length).toBeGreaterThan(15);
      }
      const e = await failure(client.createLink({ longUrl: "https://example.com/", redirectType: 9 as RedirectType }, as(u)));
      expect(e.code).toBe(Code.InvalidArgument);
      expect((await client.listLinks({}, as(u))).links).toEqual([]);
    });

    it("someone else's link is NOT_FOUND for get, update, delete and stats", async () => {
      const owner = user();
      const { link } = await client.createLink({ longUrl: "https://example.com/mine" }, as(owner));
      const other = as(user());
      const code = link!.code;
      for (const call of [
        () => client.getLink({ code }, other),
        () => client.updateLink({ code, link: { longUrl: "https://evil.example/" }, updateMask: { paths: ["long_url"] } }, other),
        () => client.deleteLink({ code }, other),
        () => client.getLinkStats({ code }, other),
      ]) {
        const e = await failure(call());
        expect(e.code).toBe(Code.NotFound);
      }
      expect((await failure(client.getLink({ code: "nope1234" }, as(owner)))).code).toBe(Code.NotFound);
      expect((await client.getLink({ code }, as(owner))).link!.longUrl).toBe("https://example.com/mine");
    });

    it("lists the caller's links newest first, paged by page_token", async () => {
      const u = user();
      const codes: string[] = [];
      for (let i = 0; i < 5; i++) {
        codes.push((await client.createLink({ longUrl: `https://example.com/${i}` }, as(u))).link!.code);
        await new Promise((r) => setTimeout(r, 3));
      }
      await client.createLink({ longUrl: "https://example.com/other" }, as(user()));
      const seen: string[] = [];
      let pageToken = "";
      for (let pages = 0; pages < 10; pages++) {
        const r = await client.listLinks({ pageSize: 2, pageToken }, as(u));
        seen.push(...r.links.map((l) => l.code));
        pageToken = r.nextPageToken;
        if (!pageToken) break;
      }
      expect(seen).toEqual([...codes].reverse());
      const e = await failure(client.listLinks({ pageSize: 101 }, as(u)));
      expect(e.code).toBe(Code.InvalidArgument);
      const first = await client.listLinks({ pageSize: 2 }, as(u));
      expect((await failure(client.listLinks({ pageSize: 2, pageToken: first.nextPageToken }, as(user())))).code).toBe(Code.InvalidArgument);
    });

    it("updates by field mask with optimistic versions and publishes UPDATED", async () => {
      const u = user();
      const exp = new Date(Date.now() + 3_600_000);
      const { link } = await client.createLink({ longUrl: "https://example.com/v1", expireTime: timestampFromDate(exp) }, as(u));
      const code = link!.code;
      const r1 = await client.updateLink(
        { code, link: { longUrl: "https://example.com/v2", redirectType: RedirectType.PERMANENT }, updateMask: { paths: ["long_url"] } },
        as(u),
      );
      expect(r1.link!.longUrl).toBe("https://example.com/v2");
      expect(r1.link!.redirectType).toBe(RedirectType.TEMPORARY); // not in the mask
      expect(r1.link!.version).toBe(2n);
      expect(timestampDate(r1.link!.expireTime!).getTime()).toBe(exp.getTime()); // kept
      await waitFor(() => events.some((e) => e.code === code && e.kind === LinkChangeKind.UPDATED && e.version === 2n));
      // remove the expiry and switch to 301, guarded by version
      const r2 = await client.updateLink(
        { code, link: { redirectType: RedirectType.PERMANENT }, updateMask: create(FieldMaskSchema, { paths: ["expire_time", "redirect_type"] }), expectedVersion: 2n },
        as(u),
      );
      expect(r2.link!.expireTime).toBeUndefined();
      expect(r2.link!.redirectType).toBe(RedirectType.PERMANENT);
      expect(r2.link!.version).toBe(3n);
      const stale = await failure(client.updateLink({ code, link: { longUrl: "https://example.com/v3" }, updateMask: { paths: ["long_url"] }, expectedVersion: 2n }, as(u)));
      expect(stale.code).toBe(Code.FailedPrecondition);
      for (const paths of [[], ["code"], ["owner_id"]]) {
        expect((await failure(client.updateLink({ code, link: {}, updateMask: { paths } }, as(u)))).code).toBe(Code.InvalidArgument);
      }
      const bad = await failure(client.updateLink({ code, link: { longUrl: "data:text/html,hi" }, updateMask: { paths: ["long_url"] } }, as(u)));
      expect(reasonOf(bad)).toBe(LinkErrorReason.URL_SCHEME_NOT_ALLOWED);
      expect((await client.getLink({ code }, as(u))).link!.version).toBe(3n);
    });

    it("deletes (then NOT_FOUND) and publishes DELETED with version + 1", async () => {
      const u = user();
      const { link } = await client.createLink({ longUrl: "https://example.com/del" }, as(u));
      const code = link!.code;
      await client.deleteLink({ code }, as(u));
      expect((await failure(client.getLink({ code }, as(u)))).code).toBe(Code.NotFound);
      expect((await failure(client.deleteLink({ code }, as(u)))).code).toBe(Code.NotFound);
      await waitFor(() => events.some((e) => e.code === code && e.kind === LinkChangeKind.DELETED && e.version === 2n));
      expect((await client.listLinks({}, as(u))).links).toEqual([]);
    });

    it("idempotency_key: a retry returns the same link; other parameters are FAILED_PRECONDITION", async () => {
      const u = user();
      const req = { longUrl: "https://example.com/idem", idempotencyKey: "order-42" };
      const a = await client.createLink(req, as(u));
      const b = await client.createLink(req, as(u));
      expect(b.idempotentReplay).toBe(true);
      expect(b.link).toEqual(a.link);
      const c = await client.createLink(req, as(user())); // keys are per caller
      expect(c.idempotentReplay).toBe(false);
      expect(c.link!.code).not.toBe(a.link!.code);
      const e = await failure(client.createLink({ ...req, longUrl: "https://example.com/other" }, as(u)));
      expect(e.code).toBe(Code.FailedPrecondition);
      expect(reasonOf(e)).toBe(LinkErrorReason.IDEMPOTENCY_KEY_REUSED);
      // concurrent twins: one link
      const twins = await Promise.all(Array.from({ length: 5 }, () => client.createLink({ ...req, idempotencyKey: "twin" }, as(u))));
      expect(new Set(twins.map((t) => t.link!.code)).size).toBe(1);
      expect((await client.listLinks({ pageSize: 100 }, as(u))).links.map((l) => l.code).sort()).toEqual([a.link!.code, twins[0]!.link!.code].sort());
      expect((await failure(client.createLink({ ...req, idempotencyKey: "\u0001bad" }, as(u)))).code).toBe(Code.InvalidArgument);
    });

    it("bulk create: per-item results in order; item_id makes a whole-stream retry idempotent", async () => {
      const u = user();
      const alias = `bulk-${randomUUID().slice(0, 6)}`;
      const items: MessageInitShape<typeof BulkCreateLinksRequestSchema>[] = [
        { itemId: "1", longUrl: "https://example.com/b1" },
        { itemId: "2", longUrl: "javascript:alert(1)" },
        { itemId: "3", longUrl: "https://example.com/b3", customAlias: alias },
        { itemId: "1", longUrl: "https://example.com/dup" },
        { itemId: "", longUrl: "https://example.com/noid" },
        { itemId: "6", longUrl: "https://example.com/b6", redirectType: RedirectType.PERMANENT },
        ...Array.from({ length: 60 }, (_, i) => ({ itemId: `x${i}`, longUrl: `https://example.com/x${i}` })),
      ];
      const stream = async function* () {
        for (const it of items) yield it;
      };
      const r1 = await client.bulkCreateLinks(stream(), as(u));
      expect(r1.results.map((r) => r.itemId)).toEqual(items.map((i) => i.itemId));
      expect(r1.succeeded).toBe(63);
      expect(r1.failed).toBe(3);
      const byIdx = r1.results;
      expect(byIdx[0]!.result.case).toBe("link");
      expect(byIdx[1]!.result.case === "error" && byIdx[1]!.result.value.reason).toBe(LinkErrorReason.URL_SCHEME_NOT_ALLOWED);
      expect(byIdx[1]!.result.case === "error" && byIdx[1]!.result.value.code).toBe(Code.InvalidArgument);
      expect(byIdx[2]!.result.case === "link" && byIdx[2]!.result.value.code).toBe(alias);
      expect(byIdx[3]!.result.case === "error" && byIdx[3]!.result.value.reason).toBe(LinkErrorReason.ITEM_ID_INVALID);
      expect(byIdx[4]!.result.case === "error" && byIdx[4]!.result.value.reason).toBe(LinkErrorReason.ITEM_ID_INVALID);
      expect(byIdx[5]!.result.case === "link" && byIdx[5]!.result.value.redirectType).toBe(RedirectType.PERMANENT);
      // replay the whole stream: same codes, nothing new stored
      const r2 = await client.bulkCreateLinks(stream(), as(u));
      const codes = (r: typeof r1) => r.results.map((x) => (x.result.case === "link" ? x.result.value.code : `err:${x.result.value?.reason}`));
      expect(codes(r2)).toEqual(codes(r1));
      const all: string[] = [];
      let pageToken = "";
      do {
        const p = await client.listLinks({ pageSize: 100, pageToken }, as(u));
        all.push(...p.links.map((l) => l.code));
        pageToken = p.nextPageToken;
      } while (pageToken);
      expect(all.length).toBe(63);
      // unauthenticated stream
      expect((await failure(client.bulkCreateLinks(stream()))).code).toBe(Code.Unauthenticated);
    });

    it("GetLinkStats: owner-only, one entry per day of the window, referrers by human clicks", async () => {
      const u = user();
      const { link } = await client.createLink({ longUrl: "https://example.com/stats" }, as(u));
      const code = link!.code;
      const stats = createClickStatsStore(fx.engine);
      const now = new Date();
      const clicks = [
        { referrer: "twitter.com", human: true, country: "DE" },
        { referrer: "twitter.com", human: true, country: "" },
        { referrer: "", human: true, country: "DE" },
        { referrer: "slack.com", human: false, country: "FR" },
      ];
      const records = clicks.map((c) => ({ eventId: randomUUID(), code, time: now, ...c }));
      await stats.recordBatch({ id: randomUUID(), seq: 1 }, records);
      const before = Date.now();
      // Batch 1 recorded and acked: the store has it in its totals once told so.
      await stats.reportProgress({ durable: `suite-${randomUUID().slice(0, 6)}`, ackFloorSeq: 1, pendingMessages: 0, pendingClicks: 0, oldestPending: undefined, at: new Date() });
      const r = await client.getLinkStats({ code, days: 7, topReferrers: 1 }, as(u));
      expect(r.code).toBe(code);
      expect(r.totalClicks).toBe(4n);
      expect(r.humanClicks).toBe(3n);
      expect(r.botClicks).toBe(1n);
      expect(r.daily).toHaveLength(7);
      expect(r.daily[6]!.date).toBe(now.toISOString().slice(0, 10));
      expect(r.daily[6]!.totalClicks).toBe(4n);
      expect(r.daily[6]!.humanClicks).toBe(3n);
      expect(r.daily.slice(0, 6).every((d) => d.totalClicks === 0n)).toBe(true);
      expect(r.referrers.map((x) => [x.referrer, x.humanClicks])).toEqual([["twitter.com", 2n]]);
      expect(r.countries.map((x) => [x.country, x.humanClicks])).toEqual([["DE", 2n]]);
      expect(timestampMs(r.asOfTime!)).toBeLessThanOrEqual(Date.now());
      expect(timestampMs(r.asOfTime!)).toBeGreaterThanOrEqual(before - 1_000);
      expect(r.pendingMessages).toBe(0n);
      expect(r.lagReportTime).toBeDefined();
      // A report with a backlog: as_of is the oldest pending message's time.
      const oldest = new Date(Date.now() - 60_000);
      await stats.reportProgress({ durable: `suite-${randomUUID().slice(0, 6)}`, ackFloorSeq: 0, pendingMessages: 3, pendingClicks: 1_500, oldestPending: oldest, at: new Date() });
      // Another process's reads may hold the previous report for a moment (a 250 ms cache).
      let lagged = await client.getLinkStats({ code }, as(u));
      for (let i = 0; i < 40 && lagged.pendingMessages !== 3n; i++) {
        await new Promise((r) => setTimeout(r, 50));
        lagged = await client.getLinkStats({ code }, as(u));
      }
      // Memory counts at once (as_of = the backlog's oldest message); Cassandra's totals are as
      // of its last fold (the first report), which this report's floor 0 does not move.
      expect([oldest.getTime(), timestampMs(r.asOfTime!)]).toContain(timestampMs(lagged.asOfTime!));
      expect(lagged.pendingMessages).toBe(3n);
      expect(lagged.pendingClicks).toBe(1_500n);
      expect(lagged.lagReportTime).toBeDefined();
      expect((await client.getLinkStats({ code }, as(u))).daily).toHaveLength(30);
      expect((await failure(client.getLinkStats({ code, days: 91 }, as(u)))).code).toBe(Code.InvalidArgument);
    });
  });
}
