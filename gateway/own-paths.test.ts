import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { loadConfig } from "../platform/config.js";
import { ServerReflectionV1, ServerReflectionV1Alpha } from "../platform/grpc/reflection.js";
import { SERVICE_MODULES } from "../services/index.js";
import { isLinkCode, isReservedWord, RESERVED_WORDS } from "../services/links/code-grammar.js";
import { createLinkStore } from "../services/links/store.js";
import { HEALTHZ_PATH, OWN_PATHS, READYZ_PATH } from "./own-paths.js";

describe("the gateway's own routes against the links grammar", () => {
  it("reserves the first segment of every path the gateway answers itself", () => {
    const missing = OWN_PATHS.map((p) => p.split("/")[1] ?? "").filter((first) => isLinkCode(first));
    expect(missing, "first path segments a link code could take: add them to RESERVED_WORDS").toEqual([]);
    for (const path of OWN_PATHS.filter((p) => p !== "/")) expect(isReservedWord(path.split("/")[1]!), path).toBe(true);
  });

  it("never takes a Connect or gRPC route (/package.Service/Method) for a code", () => {
    const descs = [...Object.values(SERVICE_MODULES).map((m) => m.desc), Health, ServerReflectionV1, ServerReflectionV1Alpha];
    for (const desc of descs) {
      expect(isLinkCode(desc.typeName), desc.typeName).toBe(false);
      for (const m of desc.methods) expect(isLinkCode(`${desc.typeName}/${m.name}`), m.name).toBe(false);
    }
  });
});

describe("the redirect door and reserved words (embedded mesh)", () => {
  let running: Running;
  let base: string;
  // Links stored under every reserved word straight in the store, past the shortener's
  // validation: even then the door must not claim those paths.
  const words = [...RESERVED_WORDS];
  const capitalised = (w: string) => w.charAt(0).toUpperCase() + w.slice(1);

  beforeAll(async () => {
    const config = loadConfig({ SWITCHBOARD_ENGINE: "memory", SWITCHBOARD_GATEWAY_PORT: "0", SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000" });
    running = await runEmbedded(config, pino({ level: "silent" }));
    base = `http://127.0.0.1:${running.gatewayPort}`;
    const store = await createLinkStore(running.engine!);
    for (const code of words.flatMap((w) => [w, capitalised(w)])) {
      await store.insertIfAbsent({ code, longUrl: `https://example.com/${code}`, ownerId: "grammar-test", createdAt: new Date(), redirectType: 302, custom: true });
    }
  });
  afterAll(() => running?.close());

  it("redirects no path named after a reserved word, in any case", async () => {
    const redirected: string[] = [];
    for (const code of words.flatMap((w) => [w, capitalised(w), w.toUpperCase()])) {
      const res = await fetch(`${base}/${code}`, { redirect: "manual" });
      await res.arrayBuffer();
      if (res.status === 301 || res.status === 302 || res.headers.get("location")) redirected.push(`${code} -> ${res.status}`);
    }
    expect(redirected).toEqual([]);
  });

  it("still answers its own paths itself", async () => {
    const health = await fetch(`${base}${HEALTHZ_PATH}`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });
    const ready = await fetch(`${base}${READYZ_PATH}`);
    expect(ready.headers.get("content-type")).toContain("application/json");
    await ready.arrayBuffer();
  });
});
