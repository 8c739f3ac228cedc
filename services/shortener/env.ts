/**
 * Shortener settings read from the environment (small readers kept here; the lead may move them
 * into platform/config.ts):
 * - SWITCHBOARD_OWN_HOSTS: comma-separated extra hosts that are ours (links to them are loops);
 *   the host of SWITCHBOARD_PUBLIC_BASE_URL is always ours.
 * - SWITCHBOARD_BLOCKLIST_FILE: the domain blocklist (one per line, '#' comments); default
 *   services/shortener/blocklist.txt. An unreadable file is a ConfigError naming the variable.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../../platform/config.js";
import { normaliseHost } from "./domain/validate.js";

export const OWN_HOSTS_ENV = "SWITCHBOARD_OWN_HOSTS";
export const BLOCKLIST_FILE_ENV = "SWITCHBOARD_BLOCKLIST_FILE";
export const DEFAULT_BLOCKLIST_FILE = fileURLToPath(new URL("./blocklist.txt", import.meta.url));

type Env = Readonly<Record<string, string | undefined>>;

export function readOwnHosts(publicBaseUrl: string, env: Env = process.env): string[] {
  const hosts = new Set<string>();
  hosts.add(normaliseHost(new URL(publicBaseUrl).hostname));
  for (const h of (env[OWN_HOSTS_ENV] ?? "").split(",")) {
    const t = h.trim();
    if (!t) continue;
    const n = normaliseHost(t.replace(/:\d+$/, ""));
    if (!n) throw new ConfigError(OWN_HOSTS_ENV, `"${t}" is not a host name`);
    hosts.add(n);
  }
  return [...hosts].filter(Boolean);
}

export function parseBlocklist(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split(/\r?\n/)) {
    const d = line.replace(/#.*/, "").trim();
    if (!d) continue;
    const n = normaliseHost(d.replace(/^\*\./, ""));
    if (n) out.add(n);
  }
  return out;
}

export function readBlocklist(env: Env = process.env): Set<string> {
  const file = env[BLOCKLIST_FILE_ENV]?.trim() || DEFAULT_BLOCKLIST_FILE;
  try {
    return parseBlocklist(readFileSync(file, "utf8"));
  } catch (e) {
    throw new ConfigError(BLOCKLIST_FILE_ENV, `cannot read ${file}: ${(e as Error).message}`);
  }
}
