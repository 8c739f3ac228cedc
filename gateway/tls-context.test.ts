// The public port's certificate: read at start with clear errors, followed when its files change,
// a bad renewal never taking the port down. Served through createOnePortServer, as the gateway does.
import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, utimesSync } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import path from "node:path";
import net from "node:net";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import pino from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError } from "../platform/config.js";
import { waitFor } from "../testkit/processes.js";
import { createOnePortServer, type OnePortServer } from "./one-port.js";
import { clientIpOf } from "./rate-limit.js";
import { watchTlsContext, type TlsContextSource } from "./tls-context.js";

const FIXTURES = fileURLToPath(new URL("../testkit/tls/", import.meta.url));
const fixture = (name: string) => path.join(FIXTURES, name);
const log = pino({ level: "silent" });

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The fixture pair `name` copied into a directory of its own, as a deployment's files. */
function filesOf(name: "a" | "b"): { certFile: string; keyFile: string; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "switchboard-tls-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const certFile = path.join(dir, "tls.crt");
  const keyFile = path.join(dir, "tls.key");
  copyFileSync(fixture(`${name}.crt`), certFile);
  copyFileSync(fixture(`${name}.key`), keyFile);
  return { certFile, keyFile, dir };
}

/** Writes another pair over the files, and moves their mtimes on so a 50 ms poll cannot miss it. */
function renew(files: { certFile: string; keyFile: string }, cert: string, key: string, stepS: number): void {
  copyFileSync(fixture(cert), files.certFile);
  copyFileSync(fixture(key), files.keyFile);
  const t = Date.now() / 1000 + stepS;
  utimesSync(files.certFile, t, t);
  utimesSync(files.keyFile, t, t);
}

async function serve(source: TlsContextSource): Promise<{ server: OnePortServer; port: number }> {
  const server = createOnePortServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
  }, { tls: source });
  const port = await server.listen(0, "127.0.0.1");
  cleanups.push(() => server.close(100));
  return { server, port };
}

/** The CN of the certificate a new connection is served. */
function servedName(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername: "localhost", rejectUnauthorized: false }, () => {
      const cn = socket.getPeerCertificate().subject.CN;
      socket.destroy();
      resolve(String(cn));
    });
    socket.once("error", reject);
  });
}

describe("the TLS certificate source", () => {
  it("loads the pair and reports when the certificate ends", async () => {
    const registry = new Registry();
    const source = watchTlsContext(filesOf("a"), log, { registry });
    cleanups.push(() => source.close());
    const notAfter = Date.parse(new X509Certificate(readFileSync(fixture("a.crt"))).validTo);
    expect(source.notAfterMs).toBe(notAfter);
    const metric = await registry.getSingleMetricAsString("gateway_tls_certificate_not_after_seconds");
    expect(metric).toContain(`gateway_tls_certificate_not_after_seconds ${notAfter / 1000}`);
  });

  it("refuses files that cannot serve, naming the variable and the reason", () => {
    const missing = { certFile: "/nonexistent/tls.crt", keyFile: fixture("a.key") };
    expect(() => watchTlsContext(missing, log)).toThrow(ConfigError);
    expect(() => watchTlsContext(missing, log)).toThrow(/SWITCHBOARD_GATEWAY_TLS_CERT_FILE cannot be read: \/nonexistent\/tls.crt \(ENOENT\)/);
    expect(() => watchTlsContext({ certFile: fixture("a.key"), keyFile: fixture("a.key") }, log)).toThrow(
      /SWITCHBOARD_GATEWAY_TLS_CERT_FILE must name a PEM certificate/,
    );
    expect(() => watchTlsContext({ certFile: fixture("a.crt"), keyFile: fixture("b.key") }, log)).toThrow(
      /SWITCHBOARD_GATEWAY_TLS_KEY_FILE must name the PEM private key of .*a\.crt: .*mismatch/i,
    );
    expect(() => watchTlsContext({ certFile: fixture("a.crt"), keyFile: fixture("README.md") }, log)).toThrow(/SWITCHBOARD_GATEWAY_TLS_KEY_FILE/);
  });

  it("serves a renewed certificate to new connections; open ones keep going; a bad renewal keeps the old one", async () => {
    const files = filesOf("a");
    const lines: string[] = [];
    const captured = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
    const source = watchTlsContext(files, captured, { checkEveryMs: 50 });
    cleanups.push(() => source.close());
    const { port } = await serve(source);
    expect(await servedName(port)).toBe("switchboard test a");

    // An HTTP/2 session opened before the renewal.
    const session = http2.connect(`https://localhost:${port}`, { ca: readFileSync(fixture("a.crt")) });
    cleanups.push(() => session.close());
    const get = () =>
      new Promise<number>((resolve, reject) => {
        const req = session.request({ ":path": "/" });
        req.on("response", (h) => resolve(Number(h[":status"])));
        req.on("error", reject);
        req.resume();
        req.end();
      });
    expect(await get()).toBe(200);
    expect(session.alpnProtocol).toBe("h2");

    // Half a renewal (new certificate, old key): refused, the old pair keeps serving.
    copyFileSync(fixture("b.crt"), files.certFile);
    const t = Date.now() / 1000 + 5;
    utimesSync(files.certFile, t, t);
    await waitFor("the refused reload", async () => (lines.some((l) => l.includes("still serving the previous certificate")) ? true : undefined), 5_000);
    expect(lines.find((l) => l.includes("still serving the previous certificate"))).toMatch(/SWITCHBOARD_GATEWAY_TLS_KEY_FILE/);
    expect(await servedName(port)).toBe("switchboard test a");

    renew(files, "b.crt", "b.key", 10);
    await waitFor("the renewed certificate", async () => ((await servedName(port)) === "switchboard test b" ? true : undefined), 5_000);
    expect(lines.some((l) => l.includes("TLS certificate reloaded") && l.includes("switchboard test b"))).toBe(true);
    expect(await get()).toBe(200);
  });

  it("a plaintext client on the TLS port is closed and counted; HTTP/1.1 over TLS is served", async () => {
    const source = watchTlsContext(filesOf("a"), log);
    cleanups.push(() => source.close());
    const refusals: string[] = [];
    const server = createOnePortServer((_req, res) => res.end("ok"), { tls: source, events: { onRefused: (_w, reason) => refusals.push(reason) } });
    const port = await server.listen(0, "127.0.0.1");
    cleanups.push(() => server.close(100));
    await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();
    await waitFor("the refusal", async () => (refusals.includes("tls_handshake") ? true : undefined), 5_000);

    const body = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ca: readFileSync(fixture("a.crt")), ALPNProtocols: ["http/1.1"] }, () => {
        expect(socket.alpnProtocol).toBe("http/1.1");
        socket.write("GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
      });
      let got = "";
      socket.on("data", (d) => (got += d.toString()));
      socket.on("end", () => resolve(got));
      socket.on("error", reject);
    });
    expect(body).toMatch(/^HTTP\/1\.1 200 /);
    expect(body).toMatch(/\r\n\r\nok$/);
  });

  it("the rate limiter sees the peer's address over HTTP/2 and HTTP/1.1, and a silent TLS client meets the first-bytes deadline", async () => {
    const source = watchTlsContext(filesOf("a"), log);
    cleanups.push(() => source.close());
    const refusals: string[] = [];
    const server = createOnePortServer((req, res) => res.end(`${req.httpVersion} ${clientIpOf(req, 0)}`), {
      tls: source,
      limits: { firstBytesTimeoutMs: 300 },
      events: { onRefused: (_w, reason) => refusals.push(reason) },
    });
    const port = await server.listen(0, "127.0.0.1");
    cleanups.push(() => server.close(100));

    const session = http2.connect(`https://localhost:${port}`, { ca: readFileSync(fixture("a.crt")) });
    cleanups.push(() => session.close());
    const h2Body = await new Promise<string>((resolve, reject) => {
      const req = session.request({ ":path": "/" });
      let body = "";
      req.on("data", (d: Buffer) => (body += d.toString()));
      req.on("end", () => resolve(body));
      req.on("error", reject);
      req.end();
    });
    expect(h2Body).toBe("2.0 127.0.0.1");
    const h1 = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ca: readFileSync(fixture("a.crt")) }, () =>
        socket.write("GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"),
      );
      let got = "";
      socket.on("data", (d) => (got += d.toString()));
      socket.on("end", () => resolve(got));
      socket.on("error", reject);
    });
    expect(h1).toMatch(/\r\n\r\n1\.1 127\.0\.0\.1$/);

    // Connected, no ClientHello: closed at the deadline like a silent cleartext client.
    const silent = net.connect(port, "127.0.0.1");
    silent.on("error", () => {});
    const closedAfter = await new Promise<number>((resolve) => {
      const t0 = Date.now();
      silent.on("close", () => resolve(Date.now() - t0));
    });
    expect(closedAfter).toBeGreaterThanOrEqual(250);
    expect(closedAfter).toBeLessThan(5_000);
    expect(refusals).toContain("first_bytes_deadline");
  });
});
