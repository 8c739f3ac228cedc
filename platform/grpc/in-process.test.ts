/**
 * What only the in-process hop has to get right on its own (server.test.ts runs the common
 * behaviour on both ways): a streamed response's backpressure, messages before a final error,
 * a reader that leaves, copies on each side, and leaving the registry on shutdown.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import pino from "pino";
import { create } from "@bufbuild/protobuf";
import { RedirectService, ResolveResponseSchema, type ResolveResponse, type WatchClicksRequest } from "../../gen/switchboard/redirect/v1/redirect_pb.js";
import { createGrpcClient } from "./client.js";
import { IN_PROCESS_PEER, STREAM_HIGH_WATER, localServerAt } from "./in-process.js";
import { grpcService, startGrpcServer, type RunningGrpcServer } from "./server.js";

const produced = { count: 0, ended: "" };
let lastPeer = "";
let kept: ResolveResponse | undefined;

const redirect = {
  async *watchClicks(req: WatchClicksRequest, ctx: HandlerContext) {
    produced.count = 0;
    produced.ended = "";
    try {
      const n = req.code === "fail-after-3" ? 3 : 200;
      for (let i = 0; i < n; i++) {
        produced.count++;
        yield { click: { code: `c${i}` } };
      }
      if (req.code === "fail-after-3") throw new ConnectError("link deleted", Code.NotFound);
      produced.ended = "done";
    } finally {
      if (!produced.ended) produced.ended = ctx.signal.aborted ? "aborted" : "threw";
    }
  },
  resolve(req: { code: string }) {
    // The same answer object every time, as a cache hands it out.
    kept ??= create(ResolveResponseSchema, { code: req.code, longUrl: "https://example.com" });
    return kept;
  },
};

describe("in-process hop", () => {
  let srv: RunningGrpcServer;
  let target: string;
  beforeAll(async () => {
    srv = await startGrpcServer({
      services: [grpcService(RedirectService, redirect)],
      port: 0,
      log: pino({ level: "silent" }),
      inProcess: true,
      contextValues: (init) => {
        lastPeer = init.peer;
        return createContextValues();
      },
    });
    target = `127.0.0.1:${srv.port}`;
  });
  afterAll(() => srv.shutdown(1_000));

  it("a reader that stops reading stops its producer at the high-water mark", async () => {
    const client = createGrpcClient(RedirectService, target);
    const it = client.watchClicks({ code: "all" })[Symbol.asyncIterator]();
    expect((await it.next()).value?.click?.code).toBe("c0");
    await new Promise((r) => setTimeout(r, 50));
    // One handed to the reader, STREAM_HIGH_WATER buffered, one more written before write() said wait.
    expect(produced.count).toBeLessThanOrEqual(STREAM_HIGH_WATER + 2);
    const codes: string[] = ["c0"];
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      codes.push(r.value.click!.code);
    }
    expect(codes).toEqual(Array.from({ length: 200 }, (_, i) => `c${i}`));
    expect(produced.ended).toBe("done");
    expect(lastPeer).toBe(IN_PROCESS_PEER);
    client.close();
  });

  it("messages written before a final error are read before the error", async () => {
    const client = createGrpcClient(RedirectService, target);
    const codes: string[] = [];
    const err = await (async () => {
      for await (const m of client.watchClicks({ code: "fail-after-3" })) codes.push(m.click!.code);
    })().catch((e: unknown) => e);
    expect(codes).toEqual(["c0", "c1", "c2"]);
    expect([(err as ConnectError).code, (err as ConnectError).rawMessage]).toEqual([Code.NotFound, "link deleted"]);
    client.close();
  });

  it("a reader that leaves cancels the handler (its signal aborts)", async () => {
    const client = createGrpcClient(RedirectService, target);
    for await (const m of client.watchClicks({ code: "all" })) {
      if (m.click?.code === "c1") break;
    }
    await expect.poll(() => produced.ended).toBe("aborted");
    expect(produced.count).toBeLessThan(200);
    client.close();
  });

  it("an aborted signal fails the stream's first read with CANCELED, the handler never runs", async () => {
    const client = createGrpcClient(RedirectService, target);
    produced.count = -1;
    const ac = new AbortController();
    ac.abort();
    const err = await client.watchClicks({ code: "all" }, { signal: ac.signal })[Symbol.asyncIterator]().next().catch((e: unknown) => e);
    expect((err as ConnectError).code).toBe(Code.Canceled);
    expect(produced.count).toBe(-1);
    client.close();
  });

  it("each side gets its own copy: a caller changing an answer does not change what the handler kept", async () => {
    const client = createGrpcClient(RedirectService, target);
    const first = await client.resolve({ code: "kept" });
    first.longUrl = "https://changed.example";
    expect(kept?.longUrl).toBe("https://example.com");
    expect((await client.resolve({ code: "kept" })).longUrl).toBe("https://example.com");
    client.close();
  });

  it("a server leaves the registry as its shutdown starts; callers then meet the closed port", async () => {
    const other = await startGrpcServer({ services: [grpcService(RedirectService, redirect)], port: 0, log: pino({ level: "silent" }), inProcess: true });
    const address = `127.0.0.1:${other.port}`;
    expect(localServerAt(address)).toBeDefined();
    expect(localServerAt(`localhost:${other.port}`)).toBeDefined();
    await other.shutdown(500);
    expect(localServerAt(address)).toBeUndefined();
    const client = createGrpcClient(RedirectService, address, { defaultTimeoutMs: 2_000 });
    const err = (await client.resolve({ code: "after" }).catch((e: unknown) => e)) as ConnectError;
    expect(err.code).toBe(Code.Unavailable);
    expect(await client.connectedWithin(200)).toBe(false);
    client.close();
  });
});
