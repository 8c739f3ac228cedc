// `switchboard apikey create|list|revoke` against the run's real Cassandra, and the key through a cluster gateway.
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../platform/config.js";
import { dropKeyspace, infra, uniqueKeyspaceName } from "../testkit/keyspace.js";
import { infraEnv } from "../testkit/servers/index.js";
import { spawnSwitchboard, waitFor } from "../testkit/processes.js";
import { runEmbedded } from "./mesh.js";

const keyspace = uniqueKeyspaceName("apikey_cli");
const secret = "apikey-cli-test-secret-0123456789abcdef";

afterAll(async () => {
  await dropKeyspace(keyspace);
});

describe("switchboard apikey (cluster engine)", () => {
  it("creates a key printed once, the gateway accepts it, revoke makes it 401 'revoked'", async () => {
    const env = { ...infraEnv(infra()), SWITCHBOARD_CASSANDRA_KEYSPACE: keyspace };
    const t0 = Date.now();
    const phase = (what: string) => console.log(`[apikey.int] ${what} at ${Date.now() - t0} ms`);
    const create = spawnSwitchboard(["apikey", "create", "--owner", "partner-1", "--name", "ci"], env);
    const code = await create.exited;
    expect(code, create.output()).toBe(0);
    const key = create.output().split("\n").find((l) => l.startsWith("sb_"))!;
    expect(key).toMatch(/^sb_[a-z2-7]{16}_[A-Za-z0-9_-]{43}$/);
    const id = key.split("_")[1]!;
    phase("created");

    const list = spawnSwitchboard(["apikey", "list", "--owner", "partner-1"], env);
    expect(await list.exited).toBe(0);
    expect(list.output()).toContain(`${id}\t`);
    expect(list.output()).not.toContain(key.slice(20));

    const config = loadConfig({ ...env, SWITCHBOARD_GATEWAY_PORT: "0", SWITCHBOARD_SHUTDOWN_GRACE_MS: "500" });
    phase("listed");
    const running = await runEmbedded(config, pino({ level: "silent" }), {
      env: { SWITCHBOARD_JWT_HS256_SECRET: secret, SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_IP: "0", SWITCHBOARD_RATE_LIMIT_CREATE_PER_MINUTE_USER: "0" },
    });
    try {
      const base = `http://127.0.0.1:${running.gatewayPort}`;
      const shorten = () =>
        fetch(`${base}/api/v1/shorten`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-api-key": key },
          // A custom alias: generated codes need SWITCHBOARD_CODE_KEY on the cluster engine.
          body: JSON.stringify({ long_url: "https://example.com/partner", custom_alias: "partner-link", idempotency_key: "k1" }),
        });
      let last = "";
      const ok = await waitFor("a create with the API key", async () => {
        const r = await shorten();
        if (r.status !== 201) last = `${r.status} ${await r.text()}`;
        return r.status === 201 ? r : undefined;
      }).catch((e: unknown) => {
        throw new Error(`${String(e)}; last answer: ${last}`);
      });
      expect(ok.status).toBe(201);
      phase("accepted by the gateway");

      const revoke = spawnSwitchboard(["apikey", "revoke", id], env);
      expect(await revoke.exited).toBe(0);
      // The cluster gateway caches verified keys for 5 s.
      const refused = await waitFor("revocation to take effect", async () => {
        const r = await shorten();
        return r.status === 401 ? r : undefined;
      });
      phase("revoked");
      expect(((await refused.json()) as { error: { message: string } }).error.message).toBe(`API key ${id} was revoked`);
    } finally {
      await running.close();
    }
  }, 240_000);
});
