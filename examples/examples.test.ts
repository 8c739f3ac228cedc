// The examples run as a partner runs them (a child process with tsx, credentials in the
// environment) against the embedded mesh, so they cannot rot.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEmbedded, type Running } from "../cmd/mesh.js";
import { signHs256 } from "../gateway/auth/jwt.js";
import { loadConfig } from "../platform/config.js";

const jwtSecret = "examples-test-secret-0123456789abcdef0123456789";
const root = fileURLToPath(new URL("..", import.meta.url));
let running: Running;
let base: string;

beforeAll(async () => {
  const config = loadConfig({ SWITCHBOARD_ENGINE: "memory", SWITCHBOARD_GATEWAY_PORT: "0", SWITCHBOARD_SHUTDOWN_GRACE_MS: "1000" });
  running = await runEmbedded(config, pino({ level: "silent" }), { env: { SWITCHBOARD_JWT_HS256_SECRET: jwtSecret } });
  base = `http://127.0.0.1:${running.gatewayPort}`;
});
afterAll(async () => {
  await running?.close();
});

function example(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ["--import", "tsx", ...args], { cwd: root, env: { ...process.env, ...env } });
    let out = "";
    let err = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.stderr.on("data", (d: Buffer) => (err += d.toString()));
    p.on("close", (code) => resolve({ code, out, err }));
  });
}

const token = (sub: string) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }, jwtSecret);

describe("examples/", () => {
  it("links.ts creates a link, follows it and reads its click", async () => {
    const r = await example(["examples/links.ts", base], { TOKEN: token("example-partner") });
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^created http:\/\/localhost:0\/[0-9A-Za-z]{7} -> https:\/\/example\.com\/docs\/getting-started$/m);
    expect(r.out).toMatch(/^GET \/[0-9A-Za-z]{7}: 302 https:\/\/example\.com\/docs\/getting-started$/m);
    expect(r.out).toMatch(/^stats: 1 clicks \(0 human\), as of \d{4}-/m);
  });

  it("links.ts says why it failed, with the code, and exits 1", async () => {
    const r = await example(["examples/links.ts", base], { TOKEN: "not-a-token" });
    expect(r.code).toBe(1);
    expect(r.err.trim()).toMatch(/^failed: Unauthenticated: malformed token/);
  });

  it("chat.ts sends a message and sees it arrive live on its device's stream", async () => {
    const r = await example(["examples/chat.ts", "example-peer", base], { TOKEN: token("example-user") });
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const sent = /^sent (\d+) \(stored before this answer\)$/m.exec(r.out);
    expect(sent).not.toBeNull();
    expect(r.out).toContain(`live: example-user: hello example-peer (${sent![1]})`);
  });
});
