import { hostname, networkInterfaces } from "node:os";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./config.js";

describe("loadConfig", () => {
  it("gives working defaults for the embedded engine", () => {
    const c = loadConfig({});
    expect(c.engine).toBe("memory");
    expect(c.gateway.port).toBe(8080);
    expect(c.cassandra.contactPoints).toEqual([{ host: "127.0.0.1", port: 9042 }]);
    expect(c.upstreams.shortener).toEqual({ host: "127.0.0.1", port: 50052 });
    expect(c.streams).toEqual({ perIdentity: 16, watchClicksPerCaller: 64 });
    expect(c.gateway.maxMessageBytes).toBe(16_384);
    expect(c.gateway.methodMaxBytes).toEqual({});
    expect(c.metrics).toEqual({ host: "127.0.0.1", port: 9464, listen: true, onPublicPort: false });
  });

  it("advertises where other processes reach this service: given, the bind host, or an address of this machine for a wildcard", () => {
    expect(loadConfig({}).advertiseHost).toBe("127.0.0.1");
    expect(loadConfig({ SWITCHBOARD_GRPC_HOST: "10.1.2.3" }).advertiseHost).toBe("10.1.2.3");
    expect(loadConfig({ SWITCHBOARD_GRPC_HOST: "0.0.0.0", SWITCHBOARD_ADVERTISE_HOST: "chat-0.chat" }).advertiseHost).toBe("chat-0.chat");
    const external = Object.values(networkInterfaces()).flatMap((a) => a ?? []).filter((a) => a.family === "IPv4" && !a.internal).map((a) => a.address);
    for (const wildcard of ["0.0.0.0", "::"]) {
      const host = loadConfig({ SWITCHBOARD_GRPC_HOST: wildcard }).advertiseHost;
      expect(host).not.toBe(wildcard);
      expect(external.length > 0 ? external : [hostname()]).toContain(host);
    }
  });

  it("reads the stream caps", () => {
    const c = loadConfig({ SWITCHBOARD_STREAMS_PER_IDENTITY: "4", SWITCHBOARD_WATCH_CLICKS_PER_CALLER: "8" });
    expect(c.streams).toEqual({ perIdentity: 4, watchClicksPerCaller: 8 });
  });

  it("parses the gateway message limits and the metrics listener", () => {
    const c = loadConfig({
      SWITCHBOARD_GATEWAY_MAX_MESSAGE_BYTES: "8192",
      SWITCHBOARD_GATEWAY_METHOD_MAX_BYTES: "switchboard.redirect.v1.RedirectService/Resolve=512, switchboard.shortener.v1.ShortenerService/CreateLink=32768",
      SWITCHBOARD_METRICS_HOST: "0.0.0.0",
      SWITCHBOARD_METRICS_PORT: "0",
      SWITCHBOARD_METRICS_ON_PUBLIC_PORT: "true",
    });
    expect(c.gateway.maxMessageBytes).toBe(8192);
    expect(c.gateway.methodMaxBytes).toEqual({
      "switchboard.redirect.v1.RedirectService/Resolve": 512,
      "switchboard.shortener.v1.ShortenerService/CreateLink": 32_768,
    });
    expect(c.metrics).toEqual({ host: "0.0.0.0", port: 0, listen: true, onPublicPort: true });
    expect(loadConfig({ SWITCHBOARD_METRICS_PORT: "off" }).metrics.listen).toBe(false);
  });

  it("gives transport limits that fit tens of thousands of subscribers, and reads them from the environment", () => {
    const d = loadConfig({}).gateway.limits;
    expect(d).toMatchObject({ firstBytesTimeoutMs: 10_000, h2IdleTimeoutMs: 120_000, h2MaxStreamsPerConnection: 100 });
    expect(d.maxStreams).toBeGreaterThanOrEqual(20_000);
    expect(d.maxConnections).toBeGreaterThanOrEqual(20_000);
    const c = loadConfig({
      SWITCHBOARD_GATEWAY_MAX_STREAMS_PER_ADDRESS: "0",
      SWITCHBOARD_GATEWAY_MAX_CONNECTIONS: "500",
      SWITCHBOARD_GATEWAY_H2_IDLE_TIMEOUT_MS: "1500",
      SWITCHBOARD_GATEWAY_HTTP1_REQUEST_TIMEOUT_MS: "2000",
      SWITCHBOARD_GATEWAY_HTTP1_HEADERS_TIMEOUT_MS: "1000",
    }).gateway.limits;
    expect(c).toMatchObject({ maxStreamsPerAddress: 0, maxConnections: 500, h2IdleTimeoutMs: 1500, http1RequestTimeoutMs: 2000, http1HeadersTimeoutMs: 1000 });
  });

  it("parses cluster settings", () => {
    const c = loadConfig({
      SWITCHBOARD_ENGINE: "cluster",
      SWITCHBOARD_CASSANDRA_CONTACT_POINTS: "db1:9043, [::1]:9044,db3",
      SWITCHBOARD_ZOOKEEPER_CONNECT: "zk1:2182,zk2",
      SWITCHBOARD_NATS_URL: "nats://n1:4222,nats://n2:4222",
      SWITCHBOARD_UPSTREAM_REDIRECT: "redirect:7000",
    });
    expect(c.cassandra.contactPoints).toEqual([
      { host: "db1", port: 9043 },
      { host: "::1", port: 9044 },
      { host: "db3", port: 9042 },
    ]);
    expect(c.zookeeper.connectString).toBe("zk1:2182,zk2:2181");
    expect(c.nats.servers).toEqual(["nats://n1:4222", "nats://n2:4222"]);
    expect(c.upstreams.redirect).toEqual({ host: "redirect", port: 7000 });
  });

  it.each([
    ["SWITCHBOARD_CASSANDRA_CONTACT_POINTS", "db1:90x2"],
    ["SWITCHBOARD_CASSANDRA_CONTACT_POINTS", "db1:9042,,db2"],
    ["SWITCHBOARD_CASSANDRA_CONTACT_POINTS", "db1:70000"],
    ["SWITCHBOARD_ENGINE", "postgres"],
    ["SWITCHBOARD_GATEWAY_PORT", "eighty"],
    ["SWITCHBOARD_GATEWAY_PORT", "65536"],
    ["SWITCHBOARD_NATS_URL", "http://n1:4222"],
    ["SWITCHBOARD_REDIS_URL", "localhost:6379"],
    ["SWITCHBOARD_CASSANDRA_KEYSPACE", "Bad-Name"],
    ["SWITCHBOARD_UPSTREAM_CHAT", "chat"],
    ["SWITCHBOARD_STREAMS_PER_IDENTITY", "0"],
    ["SWITCHBOARD_STREAMS_PER_IDENTITY", "many"],
    ["SWITCHBOARD_WATCH_CLICKS_PER_CALLER", "100001"],
    ["SWITCHBOARD_MESH_SECRET", "too-short"],
    ["SWITCHBOARD_GATEWAY_MAX_MESSAGE_BYTES", "10"],
    ["SWITCHBOARD_GATEWAY_MAX_MESSAGE_BYTES", "1e6"],
    ["SWITCHBOARD_GATEWAY_METHOD_MAX_BYTES", "Resolve=1024"],
    ["SWITCHBOARD_GATEWAY_METHOD_MAX_BYTES", "a.B/C=99999999"],
    ["SWITCHBOARD_METRICS_PORT", "metrics"],
    ["SWITCHBOARD_METRICS_ON_PUBLIC_PORT", "maybe"],
    ["SWITCHBOARD_GATEWAY_H2_MAX_STREAMS_PER_CONNECTION", "0"],
    ["SWITCHBOARD_GATEWAY_MAX_STREAMS", "-5"],
    ["SWITCHBOARD_GATEWAY_FIRST_BYTES_TIMEOUT_MS", "10s"],
    ["SWITCHBOARD_GATEWAY_HTTP1_HEADERS_TIMEOUT_MS", "200000"],
  ])("rejects %s=%s with one line naming the variable", (variable, value) => {
    let error: unknown;
    try {
      loadConfig({ [variable]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(variable);
    expect((error as ConfigError).message).toContain(variable);
    expect((error as ConfigError).message).not.toContain("\n");
  });
});
