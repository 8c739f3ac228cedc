/** User-agent classification and referrer extraction for click events (pure, unit-tested). */
import { UserAgentClass } from "../../gen/switchboard/events/v1/events_pb.js";

/** Link-preview fetchers (chat apps and social networks unfurling a pasted link). */
const PREVIEW =
  /slackbot|slack-imgproxy|facebookexternalhit|facebookcatalog|twitterbot|linkedinbot|discordbot|whatsapp|telegrambot|skypeuripreview|redditbot|embedly|vkshare|pinterest|quora link preview|iframely|mastodon|bluesky|cardyb|snapchat|viber|line-poker|google-pagerenderer|applebot|outbrain|tumblr|bitlybot|nuzzel|w3c_validator|microsoftpreview|teams/i;

/**
 * Crawlers and automated clients. `curl`, `wget` and HTTP libraries are counted as bots: a person
 * clicking a link uses a browser or an app's web view, and scripted fetches would otherwise
 * inflate human counts.
 */
const BOT =
  /bot\b|bot\/|crawler|spider|crawl|slurp|mediapartners|bingpreview|headlesschrome|phantomjs|lighthouse|pingdom|uptime|monitor|curl\/|wget\/|python-requests|python-urllib|aiohttp|httpx|go-http-client|java\/|okhttp\/[0-2]\.|apache-httpclient|libwww-perl|node-fetch|undici|axios\/|got \(|postmanruntime|insomnia|httpie|ruby|php\/|scrapy|feedfetcher|yahoo! slurp|baiduspider|yandex|duckduckbot|ahrefs|semrush|mj12bot|petalbot|bytespider|gptbot|ccbot|claudebot|perplexitybot|dataforseo|archive\.org_bot|ia_archiver/i;

const BROWSER = /mozilla\/|opera\/|dalvik\/|cfnetwork\//i;

export function classifyUserAgent(ua: string | undefined): UserAgentClass {
  if (!ua) return UserAgentClass.UNKNOWN;
  if (PREVIEW.test(ua)) return UserAgentClass.PREVIEW;
  if (BOT.test(ua)) return UserAgentClass.BOT;
  if (BROWSER.test(ua)) return UserAgentClass.HUMAN;
  return UserAgentClass.UNKNOWN;
}

/** A human click: a browser-like user agent and a GET (HEAD is never a person following a link). */
export function isHumanClick(cls: UserAgentClass, isHead: boolean): boolean {
  return cls === UserAgentClass.HUMAN && !isHead;
}

const REFERRER_HOST = /^[a-z][a-z0-9+.-]*:\/\/(?:[^/?#@]*@)?(\[[^\]]*\]|[^/?#:]+)/i;

/** The referrer's host, lower-cased, at most 255 chars; "" when absent or unparsable. */
export function referrerHost(referer: string | undefined): string {
  if (!referer) return "";
  const m = REFERRER_HOST.exec(referer);
  if (!m) return "";
  return m[1]!.toLowerCase().slice(0, 255);
}

/**
 * An ISO 3166-1 alpha-2 country code from a geo header a trusted proxy set (Cloudflare's
 * CF-IPCountry, CloudFront-Viewer-Country, ...), upper-cased; "" when absent, malformed or one of
 * the "unknown" placeholders (XX, ZZ). Cloudflare's T1 (Tor) is not a country and is dropped too.
 */
export function countryCode(value: string | undefined): string {
  if (value === undefined || value.length < 2 || value.length > 4) return "";
  const v = value.trim().toUpperCase();
  if (!/^[A-Z]{2}$/.test(v) || v === "XX" || v === "ZZ") return "";
  return v;
}
