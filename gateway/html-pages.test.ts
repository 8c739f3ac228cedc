import { describe, expect, it } from "vitest";
import { escapeHtml, gonePage, homePage, notFoundPage, prefersHtml, unavailablePage } from "./html-pages.js";

describe("prefersHtml (content negotiation)", () => {
  it.each([
    ["Firefox", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"],
    ["Chrome", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"],
    ["Safari", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"],
    ["xhtml only", "application/xhtml+xml"],
    ["text/*", "text/*"],
    ["html and json equal, html first", "text/html, application/json"],
    ["upper case", "TEXT/HTML"],
  ])("%s: HTML", (_n, accept) => {
    expect(prefersHtml(accept)).toBe(true);
  });

  it.each([
    ["no Accept", undefined],
    ["curl", "*/*"],
    ["JSON", "application/json"],
    ["JSON preferred", "application/json, text/html;q=0.5"],
    ["problem+json preferred", "application/problem+json, text/html;q=0.9"],
    ["html refused", "text/html;q=0, */*"],
    ["gRPC-web", "application/grpc-web-text"],
    ["plain text", "text/plain"],
    ["bad q", "text/html;q=abc"],
  ])("%s: not HTML", (_n, accept) => {
    expect(prefersHtml(accept)).toBe(false);
  });

  it("reads repeated Accept headers as one list", () => {
    expect(prefersHtml(["application/json;q=0.1", "text/html"])).toBe(true);
  });
});

describe("pages", () => {
  it("escapes what they echo", () => {
    expect(escapeHtml(`<a href="x">&'`)).toBe("&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    const hostile = `"><script>alert(1)</script>`;
    for (const html of [notFoundPage(hostile), gonePage(hostile)]) {
      expect(html).not.toContain("<script>");
      expect(html).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    }
  });

  it("are small self-contained documents without scripts", () => {
    for (const html of [homePage(), notFoundPage("abc1234"), gonePage("abc1234"), unavailablePage()]) {
      expect(html.startsWith("<!doctype html>")).toBe(true);
      expect(html).toContain('<meta charset="utf-8">');
      expect(html).not.toMatch(/<script|src=|href=/i);
      expect(Buffer.byteLength(html)).toBeLessThan(2_048);
    }
  });
});
