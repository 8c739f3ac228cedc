// WatchClicks on the memory engine: the redirect service's internal gRPC port with the identity
// assertion the gateway would sign; clicks come from real redirects through the gateway door.
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../../cmd/mesh.js";
import { UserAgentClass } from "../../gen/switchboard/events/v1/events_pb.js";
import { RedirectService, type WatchClicksResponse } from "../../gen/switchboard/redirect/v1/redirect_pb.js";
import { loadConfig } from "../../platform/config.js";
import { createGrpcClient } from "../../platform/grpc/client.js";
import { assertionHeaders, TEST_MESH_SECRET } from "../../testkit/mesh-identity.js";
import { createLinkStore } from "../links/store.js";

let running: Running;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  const config = loadConfig({
    SWITCHBOARD_ENGINE: "memory",
    SWITCHBOARD_GATEWAY_PORT: "0",
    SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000",
    SWITCHBOARD_WATCH_CLICKS_PER_CALLER: "3",
    SWITCHBOARD_MESH_SECRET: TEST_MESH_SECRET,
  });
  running = await runEmbedded(config, pino({ level: "silent" }));
  const store = await createLinkStore(running.engine!);
  for (const [code, owner] of [["wcmine1", "alice"], ["wcmine2", "alice"], ["wctheirs", "bob"]] as const) {
    await store.insertIfAbsent({ code, longUrl: `https://example.com/${code}`, ownerId: owner, createdAt: new Date(), redirectType: 302 });
  }
});
afterAll(() => running.close());

const as = (user: string) => ({ headers: assertionHeaders(user, RedirectService.method.watchClicks) });

describe("RedirectService.WatchClicks", () => {
  const client = () => createGrpcClient(RedirectService, `127.0.0.1:${running.grpcPorts.redirect}`);
  const click = (code: string, ua = "Mozilla/5.0 Chrome/120") =>
    fetch(`http://127.0.0.1:${running.gatewayPort}/${code}`, { redirect: "manual", headers: { "user-agent": ua } }).then((r) => r.status);

  it("streams live clicks on one of the caller's links, gateway id cleared", async () => {
    const ac = new AbortController();
    const got: WatchClicksResponse[] = [];
    const stream = client().watchClicks({ code: "wcmine1" }, { ...as("alice"), signal: ac.signal });
    const reading = (async () => {
      for await (const m of stream) got.push(m as WatchClicksResponse);
    })().catch(() => undefined);
    await sleep(100);
    expect(await click("wcmine1")).toBe(302);
    expect(await click("wcmine2")).toBe(302); // another code: not on this stream
    expect(await click("wcmine1", "Slackbot-LinkExpanding 1.0")).toBe(302);
    for (let i = 0; i < 50 && got.length < 2; i++) await sleep(20);
    ac.abort();
    await reading;
    expect(got.map((m) => [m.click?.code, m.click?.userAgentClass, m.click?.gatewayId])).toEqual([
      ["wcmine1", UserAgentClass.HUMAN, ""],
      ["wcmine1", UserAgentClass.PREVIEW, ""],
    ]);
  });

  it("with no code, streams clicks on all the caller's links only", async () => {
    const ac = new AbortController();
    const got: string[] = [];
    const stream = client().watchClicks({ code: "" }, { ...as("alice"), signal: ac.signal });
    const reading = (async () => {
      for await (const m of stream) got.push((m as WatchClicksResponse).click!.code);
    })().catch(() => undefined);
    await sleep(100);
    await click("wctheirs");
    await click("wcmine2");
    await click("wcmine1");
    for (let i = 0; i < 50 && got.length < 2; i++) await sleep(20);
    await sleep(50);
    ac.abort();
    await reading;
    expect(got.sort()).toEqual(["wcmine1", "wcmine2"]);
  });

  it("someone else's link is NotFound; no caller is Unauthenticated", async () => {
    const first = async (opts: object) => {
      for await (const _ of client().watchClicks({ code: "wctheirs" }, opts)) return "message";
      return "end";
    };
    await expect(first(as("alice"))).rejects.toMatchObject({ code: 5 }); // NOT_FOUND
    await expect(first({})).rejects.toMatchObject({ code: 16 }); // UNAUTHENTICATED
  });

  it("caps a caller's streams on the service itself (behind the gateway's cap), ResourceExhausted beyond", async () => {
    const ac = new AbortController();
    const open = [1, 2, 3].map(() => {
      const s = client().watchClicks({ code: "" }, { ...as("capped"), signal: ac.signal });
      return (async () => {
        for await (const _ of s);
      })().catch((e: unknown) => e);
    });
    await sleep(150);
    const fourth = async () => {
      for await (const _ of client().watchClicks({ code: "" }, as("capped"))) return "message";
      return "end";
    };
    await expect(fourth()).rejects.toMatchObject({ code: 8, rawMessage: expect.stringMatching(/at most 3 at once/) }); // RESOURCE_EXHAUSTED
    // Someone else is not affected.
    const other = new AbortController();
    const theirs = (async () => {
      for await (const _ of client().watchClicks({ code: "" }, { ...as("not-capped"), signal: other.signal }));
    })().catch((e: unknown) => e);
    await sleep(100);
    other.abort();
    expect(await theirs).toMatchObject({ code: 1 }); // CANCELLED by us, not refused
    ac.abort();
    await Promise.all(open);
  });
});
