/**
 * Browser tests: Debian's Chromium driven by playwright-core, on pages served from an origin of
 * their own, so every call to the gateway is cross-origin (CORS preflights, exposed headers,
 * fetch streaming) exactly as for a web app. The page script is testkit/browser/page-client.ts,
 * bundled with esbuild once per run; nothing is downloaded.
 */
import { build } from "esbuild";
import { existsSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import type { PageApi } from "./browser/page-client.js";
import { CHROMIUM } from "./servers/paths.js";

const ENTRY = fileURLToPath(new URL("./browser/page-client.ts", import.meta.url));

let bundled: Promise<string> | undefined;
function pageScript(): Promise<string> {
  bundled ??= build({ entryPoints: [ENTRY], bundle: true, write: false, format: "esm", platform: "browser", target: "chrome120", logLevel: "silent" }).then(
    (r) => r.outputFiles[0]!.text,
  );
  return bundled;
}

/** A static origin serving the page and its script. */
export interface PageOrigin {
  readonly url: string;
  close(): Promise<void>;
}

/** Serves the test page on 127.0.0.1 (`port` 0: any free port). */
export async function servePageOrigin(port = 0): Promise<PageOrigin> {
  const script = await pageScript();
  const server = http.createServer((req, res) => {
    if (req.url === "/page-client.js") {
      res.writeHead(200, { "content-type": "text/javascript" }).end(script);
    } else if (req.url === "/") {
      res.writeHead(200, { "content-type": "text/html" }).end('<!doctype html><title>switchboard browser test</title><script type="module" src="/page-client.js"></script>');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/install-infra.sh (it apt-installs chromium)`);
  return chromium.launch({ executablePath: CHROMIUM });
}

/** A page of `origin` with the page client loaded (`window.switchboard`). */
export async function openPage(browser: Browser, origin: PageOrigin): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(origin.url);
  await page.waitForFunction(() => "switchboard" in globalThis);
  return page;
}

type Api = PageApi;
type Args<K extends keyof Api> = Parameters<Api[K]>;
type Result<K extends keyof Api> = Awaited<ReturnType<Api[K]>>;

/** Calls the page client's `name(...args)` inside the page and returns its (JSON) result. */
export function inPage<K extends keyof Api>(page: Page, name: K, ...args: Args<K>): Promise<Result<K>> {
  return page.evaluate(
    ([n, a]) => (globalThis as unknown as { switchboard: Record<string, (...x: unknown[]) => unknown> }).switchboard[n]!(...a),
    [name, args] as [string, unknown[]],
  ) as Promise<Result<K>>;
}
