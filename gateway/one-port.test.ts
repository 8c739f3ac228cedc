import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOnePortServer, detectProtocol, type OnePortServer } from "./one-port.js";

describe("detectProtocol", () => {
  const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  it("recognises the HTTP/2 preface, also when it arrives in pieces", () => {
    expect(detectProtocol(preface)).toBe("h2");
    expect(detectProtocol(Buffer.concat([preface, Buffer.from([0, 0, 0])]))).toBe("h2");
    expect(detectProtocol(preface.subarray(0, 5))).toBe("more");
  });
  it("sends everything else to HTTP/1.1", () => {
    expect(detectProtocol(Buffer.from("GET / HTTP/1.1\r\n"))).toBe("http1");
    expect(detectProtocol(Buffer.from("PRIX"))).toBe("http1");
    expect(detectProtocol(Buffer.from("P"))).toBe("more");
  });
});

describe("one port for HTTP/1.1 and h2c", () => {
  let server: OnePortServer;
  let port: number;
  beforeAll(async () => {
    server = createOnePortServer((req, res) => {
      res.setHeader("content-type", "text/plain");
      res.end(`${req.httpVersion} ${req.method} ${req.url}`);
    });
    port = await server.listen(0, "127.0.0.1");
  });
  afterAll(() => server.close(100));

  it("answers HTTP/1.1", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/one`);
    expect(await res.text()).toBe("1.1 GET /one");
  });

  it("answers several h2c requests on one connection", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const bodies = await Promise.all(
        [1, 2, 3].map(
          (i) =>
            new Promise<string>((resolve, reject) => {
              const req = session.request({ ":path": `/h2/${i}` });
              let body = "";
              req.on("data", (d: Buffer) => (body += d.toString()));
              req.on("end", () => resolve(body));
              req.on("error", reject);
              req.end();
            }),
        ),
      );
      expect(bodies).toEqual(["2.0 GET /h2/1", "2.0 GET /h2/2", "2.0 GET /h2/3"]);
    } finally {
      session.close();
    }
  });

  it("handles a preface split across TCP writes", async () => {
    const body = await new Promise<string>((resolve, reject) => {
      const session = http2.connect(`http://127.0.0.1:${port}`, {
        createConnection: () => {
          const socket = net.connect(port, "127.0.0.1");
          const write = socket.write.bind(socket);
          let first = true;
          // Split the very first write (the preface) into two TCP segments.
          socket.write = ((chunk: Buffer, ...rest: never[]) => {
            if (first && Buffer.isBuffer(chunk) && chunk.length > 4) {
              first = false;
              write(chunk.subarray(0, 4));
              socket.setNoDelay(true);
              return write(chunk.subarray(4), ...rest);
            }
            return write(chunk, ...rest);
          }) as typeof socket.write;
          return socket;
        },
      });
      const req = session.request({ ":path": "/split" });
      let text = "";
      req.on("data", (d: Buffer) => (text += d.toString()));
      req.on("end", () => {
        session.close();
        resolve(text);
      });
      req.on("error", reject);
      req.end();
    });
    expect(body).toBe("2.0 GET /split");
  });
});

describe("HTTP/2 bytes beyond the per-turn intake (fair-intake.ts)", () => {
  it("delivers every byte of parallel uploads, in order, when reads wait for later turns", async () => {
    const server = createOnePortServer((req, res) => {
      const hash = createHash("sha256");
      req.on("data", (d: Buffer) => hash.update(d));
      req.on("end", () => res.end(hash.digest("hex")));
    });
    const port = await server.listen(0, "127.0.0.1");
    // Six connections at once, 2 MB each: far more than one turn's 32 KB, so reads are held
    // with their sockets paused and handed over round-robin.
    const bodies = Array.from({ length: 6 }, () => randomBytes(2 * 1024 * 1024));
    const sessions = bodies.map(() => http2.connect(`http://127.0.0.1:${port}`));
    try {
      const digests = await Promise.all(
        bodies.map(
          (body, i) =>
            new Promise<string>((resolve, reject) => {
              const req = sessions[i]!.request({ ":method": "POST", ":path": "/upload" });
              let out = "";
              req.on("data", (d: Buffer) => (out += d.toString()));
              req.on("end", () => resolve(out));
              req.on("error", reject);
              req.end(body);
            }),
        ),
      );
      expect(digests).toEqual(bodies.map((b) => createHash("sha256").update(b).digest("hex")));
    } finally {
      for (const s of sessions) s.close();
      await server.close(100);
    }
  });
});

describe("h2c responses", () => {
  it("delivers parallel downloads byte for byte, the session's frames written to the socket in batches", async () => {
    const payloads = Array.from({ length: 20 }, () => randomBytes(300 * 1024));
    const server = createOnePortServer((req, res) => {
      const i = Number(req.url?.slice(1));
      // Written in 16 KB pieces: many DATA frames queue while earlier writes are in flight.
      const p = payloads[i]!;
      const out = res as http.ServerResponse;
      for (let at = 0; at < p.length; at += 16 * 1024) out.write(p.subarray(at, at + 16 * 1024));
      out.end();
    });
    const batched = { calls: 0, chunks: 0 };
    server.tcp.on("connection", (socket: net.Socket) => {
      const writev = (socket as unknown as { _writev: (chunks: unknown[], cb: () => void) => void })._writev.bind(socket);
      (socket as unknown as { _writev: typeof writev })._writev = (chunks, cb) => {
        batched.calls += 1;
        batched.chunks += chunks.length;
        writev(chunks, cb);
      };
    });
    const port = await server.listen(0, "127.0.0.1");
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const got = await Promise.all(
        payloads.map(
          (_, i) =>
            new Promise<Buffer>((resolve, reject) => {
              const req = session.request({ ":path": `/${i}` });
              const parts: Buffer[] = [];
              req.on("data", (d: Buffer) => parts.push(d));
              req.on("end", () => resolve(Buffer.concat(parts)));
              req.on("error", reject);
              req.end();
            }),
        ),
      );
      got.forEach((b, i) => expect(b.equals(payloads[i]!)).toBe(true));
      // Frames the session handed over together left in one writev call, not one write each.
      expect(batched.calls).toBeGreaterThan(0);
      expect(batched.chunks).toBeGreaterThan(batched.calls);
    } finally {
      session.close();
      await server.close(100);
    }
  });
});

describe("slow clients", () => {
  it("answers 408 and closes a connection whose headers never finish (HTTP/1.1)", async () => {
    const server = createOnePortServer((_req, res) => res.end("ok"), { headersTimeoutMs: 300, timeoutCheckMs: 50 });
    const port = await server.listen(0, "127.0.0.1");
    try {
      const started = Date.now();
      const { text, ms } = await new Promise<{ text: string; ms: number }>((resolve, reject) => {
        const c = net.connect(port, "127.0.0.1", () => c.write("GET /slow HTTP/1.1\r\nHost: x\r\nX-Trickle: 1\r\n"));
        let text = "";
        c.on("data", (d: Buffer) => (text += d.toString()));
        c.on("close", () => resolve({ text, ms: Date.now() - started }));
        c.on("error", reject);
      });
      expect(text).toMatch(/^HTTP\/1\.1 408 /);
      expect(ms).toBeLessThan(5_000);
    } finally {
      await server.close(100);
    }
  });

  it("still serves a client that sends its request promptly after connecting", async () => {
    const server = createOnePortServer((_req, res) => res.end("ok"), { headersTimeoutMs: 300, timeoutCheckMs: 50 });
    const port = await server.listen(0, "127.0.0.1");
    try {
      // Two requests on one keep-alive connection, the second after the headers timeout has passed.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const get = () =>
        new Promise<string>((resolve, reject) => {
          http.get({ host: "127.0.0.1", port, path: "/", agent }, (res) => {
            let body = "";
            res.on("data", (d: Buffer) => (body += d.toString()));
            res.on("end", () => resolve(`${res.statusCode} ${body}`));
          }).on("error", reject);
        });
      expect(await get()).toBe("200 ok");
      await new Promise((r) => setTimeout(r, 500));
      expect(await get()).toBe("200 ok");
      agent.destroy();
    } finally {
      await server.close(100);
    }
  });
});

describe("graceful close", () => {
  it("lets an in-flight request finish and does not wait for idle keep-alive connections", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const server = createOnePortServer((req, res) => {
      if (req.url === "/slow") void gate.then(() => res.end("slow done"));
      else res.end("fast");
    });
    const port = await server.listen(0, "127.0.0.1");
    // An idle keep-alive connection (fetch keeps its socket open) ...
    expect(await (await fetch(`http://127.0.0.1:${port}/fast`)).text()).toBe("fast");
    // ... and one request still being answered.
    const slow = fetch(`http://127.0.0.1:${port}/slow`).then((r) => r.text());
    await new Promise((r) => setTimeout(r, 100));
    const closed = server.close(60_000);
    release();
    expect(await slow).toBe("slow done");
    const outcome = await Promise.race([
      closed.then(() => "closed"),
      new Promise((r) => setTimeout(() => r("still waiting for the grace period"), 5_000)),
    ]);
    expect(outcome).toBe("closed");
  });
});
