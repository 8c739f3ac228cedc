// Proves the four servers of the run are real and usable, and that the harness cleans up.
import { existsSync } from "node:fs";
import net from "node:net";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { connect, StringCodec } from "nats";
import zookeeper from "node-zookeeper-client";
import { describe, expect, it } from "vitest";
import { infra, useKeyspace } from "./keyspace.js";
import { listMarkedProcesses, pidAlive, RUN_TAG, startRedis } from "./servers/index.js";

const sc = StringCodec();

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

describe("infra provided by global setup", () => {
  it("runs on loopback, on our own ports, with versions reported by the servers", () => {
    const i = infra();
    console.log(
      `[harness] zookeeper ${i.zookeeper.version}, nats ${i.nats.version}, redis ${i.redis.version}, cassandra ${i.cassandra.version}`,
    );
    expect(i.redis.port).not.toBe(6379);
    expect(i.nats.port).not.toBe(4222);
    expect(i.zookeeper.port).not.toBe(2181);
    expect(i.cassandra.port).not.toBe(9042);
    for (const s of [i.zookeeper, i.nats, i.redis, i.cassandra]) {
      expect(s.host).toBe("127.0.0.1");
      expect(s.version).toMatch(/^\d+\.\d+\.\d+/);
    }
    expect(i.cassandra.version.startsWith("5.0.")).toBe(true);
    // The workers inherit the run tag, so processes they start are checked by the teardown too.
    expect(RUN_TAG).toMatch(/^r\d+$/);
    expect(listMarkedProcesses().length).toBeGreaterThanOrEqual(8); // 4 servers + 4 supervisors
  });
});

describe("zookeeper", () => {
  it("creates and reads back a znode", async () => {
    const { connectString, version } = infra().zookeeper;
    const client = zookeeper.createClient(connectString, { sessionTimeout: 2000, retries: 0 });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("zookeeper: no connection in 10s")), 10_000);
      client.once("connected", () => {
        clearTimeout(t);
        resolve();
      });
      client.connect();
    });
    try {
      // minSessionTimeout=1000 in our zoo.cfg lets the server grant the short session we asked for.
      expect(client.getSessionTimeout()).toBeLessThanOrEqual(2000);
      const path = `/harness-${randomBytes(4).toString("hex")}`;
      const payload = Buffer.from(`hello from zookeeper ${version}`);
      const created = await new Promise<string>((resolve, reject) =>
        client.create(path, payload, zookeeper.CreateMode.PERSISTENT, (err, p) => (err ? reject(err) : resolve(p))),
      );
      expect(created).toBe(path);
      const data = await new Promise<Buffer>((resolve, reject) =>
        client.getData(path, (err, d) => (err ? reject(err) : resolve(d))),
      );
      expect(data.toString()).toBe(payload.toString());
      // a second create of the same path must be refused by the server
      const err = await new Promise<unknown>((resolve) =>
        client.create(path, payload, zookeeper.CreateMode.PERSISTENT, (e) => resolve(e)),
      );
      expect(err instanceof zookeeper.Exception && err.getCode()).toBe(zookeeper.Exception.NODE_EXISTS);
      console.log(`[harness] zookeeper ${version}: created and read ${path}`);
    } finally {
      client.close();
    }
  });
});

describe("nats", () => {
  it("delivers a published message to a subscriber", async () => {
    const nc = await connect({ servers: infra().nats.url });
    try {
      const sub = nc.subscribe("harness.ping", { max: 1 });
      const got = (async () => {
        for await (const m of sub) return sc.decode(m.data);
        return undefined;
      })();
      nc.publish("harness.ping", sc.encode("pong"));
      expect(await got).toBe("pong");
      expect(nc.info?.version).toBe(infra().nats.version);
    } finally {
      await nc.drain();
    }
  });

  it("has JetStream: stream add, publish with ack, message stored", async () => {
    const nc = await connect({ servers: infra().nats.url });
    try {
      const jsm = await nc.jetstreamManager();
      const name = `HARNESS_${randomBytes(3).toString("hex").toUpperCase()}`;
      await jsm.streams.add({ name, subjects: [`${name}.>`] });
      const js = nc.jetstream();
      const ack1 = await js.publish(`${name}.a`, sc.encode("one"));
      const ack2 = await js.publish(`${name}.b`, sc.encode("two"));
      expect(ack1.stream).toBe(name);
      expect([ack1.seq, ack2.seq]).toEqual([1, 2]);
      const info = await jsm.streams.info(name);
      expect(info.state.messages).toBe(2);
      const stored = await jsm.streams.getMessage(name, { seq: 2 });
      expect(sc.decode(stored.data)).toBe("two");
      await jsm.streams.delete(name);
    } finally {
      await nc.drain();
    }
  });
});

describe("redis", () => {
  it("sets and gets a key", async () => {
    const redis = new Redis(infra().redis.url, { maxRetriesPerRequest: 1 });
    try {
      const key = `harness:${randomBytes(4).toString("hex")}`;
      expect(await redis.set(key, "value-1", "EX", 60)).toBe("OK");
      expect(await redis.get(key)).toBe("value-1");
      expect(await redis.incr(`${key}:n`)).toBe(1);
      const info = await redis.info("server");
      expect(info).toContain(`redis_version:${infra().redis.version}`);
    } finally {
      await redis.quit();
    }
  });
});

describe("cassandra", () => {
  const ks = useKeyspace("harness");

  it("creates a table, inserts and selects in a per-file keyspace", async () => {
    const { client, keyspace } = ks;
    await client.execute("CREATE TABLE links (id text PRIMARY KEY, target text, hits int)");
    await client.execute("INSERT INTO links (id, target, hits) VALUES (?, ?, ?)", ["abc", "https://example.test/", 3], {
      prepare: true,
    });
    const rs = await client.execute("SELECT target, hits FROM links WHERE id = ?", ["abc"], { prepare: true });
    expect(rs.rowLength).toBe(1);
    expect(rs.first().get("target")).toBe("https://example.test/");
    expect(rs.first().get("hits")).toBe(3);
    const lwt = await client.execute("INSERT INTO links (id, target) VALUES ('abc', 'x') IF NOT EXISTS");
    expect(lwt.wasApplied()).toBe(false);
    const tables = await client.execute(
      "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
      [keyspace],
      { prepare: true },
    );
    expect(tables.rows.map((r) => r.get("table_name"))).toEqual(["links"]);
    const local = await client.execute("SELECT release_version FROM system.local");
    expect(local.first().get("release_version")).toBe(infra().cassandra.version);
  });
});

describe("server lifecycle", () => {
  it("stop() ends a separately started server, its supervisor and its temp dir", async () => {
    const r = await startRedis();
    expect(r.dir).toContain("switchboard-it-");
    expect(r.port).not.toBe(infra().redis.port);
    const client = new Redis(r.url, { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
    client.on("error", () => {});
    await client.connect();
    expect(await client.ping()).toBe("PONG");
    client.disconnect();
    expect(pidAlive(r.pid)).toBe(true);
    expect(listMarkedProcesses().some((p) => p.pid === r.pid)).toBe(true);

    await r.stop();

    expect(pidAlive(r.pid)).toBe(false);
    expect(existsSync(r.dir)).toBe(false);
    expect(await canConnect(r.port)).toBe(false);
    expect(listMarkedProcesses().some((p) => p.cmdline.includes(r.dir))).toBe(false);
    await r.stop(); // idempotent
  });
});
