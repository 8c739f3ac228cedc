import { describe, expect, it } from "vitest";
import { DEV_JWT_SECRET } from "../gateway/auth/config.js";
import { secretKey, verifyJwt } from "../gateway/auth/jwt.js";
import { ConfigError, loadConfig } from "../platform/config.js";
import { spawnSwitchboard } from "../testkit/processes.js";
import { apiKeyCommand, devTokenCommand, UsageError } from "./dev-token.js";

const io = () => {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l: string) => void out.push(l), err: (l: string) => void err.push(l) } };
};

describe("switchboard dev-token", () => {
  it("memory engine: signs with the dev secret, warns on stderr, token verifies with sub = user", async () => {
    const c = io();
    const token = devTokenCommand(["alice"], { engine: "memory" }, {}, c.io);
    expect(c.out).toEqual([token]);
    expect(c.err.join("\n")).toMatch(/DEV secret/);
    const claims = await verifyJwt(token, () => secretKey(DEV_JWT_SECRET));
    expect(claims.sub).toBe("alice");
    expect(claims.exp! - claims.iat!).toBe(86_400);
  });

  it("uses the configured secret, issuer and audience; --ttl sets the lifetime", async () => {
    const secret = "a-real-secret-0123456789abcdef0123456789";
    const env = { SWITCHBOARD_JWT_HS256_SECRET: secret, SWITCHBOARD_JWT_ISSUER: "iss", SWITCHBOARD_JWT_AUDIENCE: "aud" };
    const c = io();
    const token = devTokenCommand(["bob", "--ttl", "60"], { engine: "cluster" }, env, c.io);
    expect(c.err).toEqual([]);
    const claims = await verifyJwt(token, () => secretKey(secret), { issuer: "iss", audience: "aud" });
    expect(claims.exp! - claims.iat!).toBe(60);
  });

  it("cluster engine without a secret, or a short secret: ConfigError naming the variable", () => {
    expect(() => devTokenCommand(["bob"], { engine: "cluster" }, {}, io().io)).toThrow(ConfigError);
    expect(() => devTokenCommand(["bob"], { engine: "memory" }, { SWITCHBOARD_JWT_HS256_SECRET: "short" }, io().io)).toThrow(
      /SWITCHBOARD_JWT_HS256_SECRET must be at least 32 bytes/,
    );
    expect(() => devTokenCommand([], { engine: "memory" }, {}, io().io)).toThrow(UsageError);
  });

  it("never mints a token the gateway refuses: ttl within SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS, user a valid id", async () => {
    const env = { SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS: "3600" };
    expect(() => devTokenCommand(["bob", "--ttl", "3601"], { engine: "memory" }, env, io().io)).toThrow(/--ttl must be at most 3600 seconds/);
    expect(() => devTokenCommand(["bob", "--ttl", "86401"], { engine: "memory" }, {}, io().io)).toThrow(/--ttl must be at most 86400 seconds/);
    // The default 24 h shrinks to the configured maximum, and the gateway's own check accepts it.
    const token = devTokenCommand(["bob"], { engine: "memory" }, env, io().io);
    const claims = await verifyJwt(token, () => secretKey(DEV_JWT_SECRET), { maxLifetimeSeconds: 3600 });
    expect(claims.exp - claims.iat!).toBe(3600);
    for (const user of ["bob ", "b\tob", "bøb"]) {
      expect(() => devTokenCommand([user], { engine: "memory" }, {}, io().io)).toThrow(/user must be a valid user id: 1-256 printable ASCII/);
    }
  });

  it("a bad SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS is a ConfigError naming it", () => {
    for (const v of ["0", "59", "31536001", "1d"]) {
      expect(() => devTokenCommand(["bob"], { engine: "memory" }, { SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS: v }, io().io)).toThrow(
        /SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS must be a whole number of seconds 60-31536000/,
      );
    }
  });

  it("apikey on the memory engine explains it needs the cluster engine", async () => {
    await expect(apiKeyCommand(["create", "--owner", "x"], loadConfig({}), io().io)).rejects.toThrow(/SWITCHBOARD_ENGINE=cluster/);
  });

  it("runs from the CLI: the token on stdout, exit 0", async () => {
    const p = spawnSwitchboard(["dev-token", "carol"], {});
    expect(await p.exited).toBe(0);
    const token = p.output().split("\n").find((l) => l.split(".").length === 3 && l.startsWith("eyJ"));
    expect((await verifyJwt(token!, () => secretKey(DEV_JWT_SECRET))).sub).toBe("carol");
  });

  it("the gateway refuses to start on the cluster engine without a secret, in one line naming it", async () => {
    const p = spawnSwitchboard(["gateway"], { SWITCHBOARD_ENGINE: "cluster" });
    expect(await p.exited).toBe(2);
    const lines = p.output().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^switchboard: invalid configuration: SWITCHBOARD_JWT_HS256_SECRET /);
  });
});
