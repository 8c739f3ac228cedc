/**
 * Small HTML pages for people who open the gateway in a browser: the home page (`/`), an
 * unknown code (404), an expired link (410) and a lookup that could not be made (503). Only
 * requests whose Accept prefers HTML get them; API clients (JSON, `*\/*` alone, no Accept)
 * keep the JSON and plain-text answers, so nothing scripted changes.
 *
 * Every page is self-contained (inline style, no script, no external resource) and sent with a
 * CSP that forbids everything else; anything echoed from the request is escaped.
 */
import type http from "node:http";
import type http2 from "node:http2";

type Res = http.ServerResponse | http2.Http2ServerResponse;

/**
 * True when Accept names an HTML type (text/html, application/xhtml+xml or text/*) with q > 0
 * at least as high as any JSON type. `*\/*` counts for neither: curl and most SDKs send only it.
 */
export function prefersHtml(accept: string | string[] | undefined): boolean {
  if (accept === undefined) return false;
  const text = (Array.isArray(accept) ? accept.join(",") : accept).toLowerCase();
  if (!text.includes("html") && !text.includes("text/*")) return false;
  let html = 0;
  let json = 0;
  for (const part of text.split(",")) {
    const [rawType, ...params] = part.split(";");
    const type = rawType!.trim();
    let q = 1;
    for (const p of params) {
      const [k, v] = p.split("=");
      if (k?.trim() === "q") {
        const n = Number(v?.trim());
        q = Number.isFinite(n) ? Math.min(Math.max(n, 0), 1) : 0;
      }
    }
    if (type === "text/html" || type === "application/xhtml+xml" || type === "text/*") html = Math.max(html, q);
    else if (type === "application/json" || type.endsWith("+json") || type === "application/*") json = Math.max(json, q);
  }
  return html > 0 && html >= json;
}

const ESCAPES: Readonly<Record<string, string>> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const STYLE =
  "body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}" +
  "h1{font-size:1.5rem}code{background:#f2f2f2;padding:0 .25rem;border-radius:3px}p.small{color:#666;font-size:.875rem}";

function page(title: string, body: string): string {
  return (
    `<!doctype html>\n<html lang="en"><head><meta charset="utf-8">` +
    `<meta name="viewport" content="width=device-width,initial-scale=1">` +
    `<meta name="robots" content="noindex">` +
    `<title>${escapeHtml(title)} · Switchboard</title><style>${STYLE}</style></head>` +
    `<body><h1>${escapeHtml(title)}</h1>${body}</body></html>\n`
  );
}

export function homePage(): string {
  return page(
    "Switchboard",
    "<p>This is a Switchboard link gateway: short links on this host redirect to where they point.</p>" +
      '<p class="small">Links are created through the API (<code>POST /api/v1/shorten</code> or ' +
      "<code>switchboard.shortener.v1.ShortenerService</code>) with credentials.</p>",
  );
}

export function notFoundPage(code: string): string {
  return page(
    "Link not found",
    `<p>There is no link <code>${escapeHtml(code)}</code> here. Check the address for typos: codes are case-sensitive.</p>`,
  );
}

export function gonePage(code: string): string {
  return page("Link expired", `<p>The link <code>${escapeHtml(code)}</code> has expired and no longer redirects.</p>`);
}

export function unavailablePage(): string {
  return page("Try again shortly", "<p>This link cannot be looked up right now. Please try again in a moment.</p>");
}

/** Writes an HTML page; HEAD gets the headers only. Caches must key on Accept (Vary). */
export function sendHtml(res: Res, status: number, html: string, head: boolean): void {
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "content-length": String(Buffer.byteLength(html)),
    "cache-control": "no-store",
    vary: "accept",
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  });
  const r = res as http.ServerResponse;
  if (head) r.end();
  else r.end(html);
}
