/**
 * The public port's TLS certificate and key, read from PEM files and re-read when they change:
 * certificates are renewed every 60-90 days (ACME) and a restart should not be the way to pick
 * up the new one. Every new connection takes the context current at its accept; connections
 * already open keep theirs. A file that cannot be read or a key that does not match keeps the
 * old context serving and is logged: a half-written renewal must not take the port down.
 */
import { X509Certificate } from "node:crypto";
import { readFileSync, unwatchFile, watchFile } from "node:fs";
import tls from "node:tls";
import type { Logger } from "pino";
import { Gauge, type Registry } from "prom-client";
import { ConfigError } from "../platform/config.js";

const CERT_VAR = "SWITCHBOARD_GATEWAY_TLS_CERT_FILE";
const KEY_VAR = "SWITCHBOARD_GATEWAY_TLS_KEY_FILE";

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TlsContextSource {
  /** The context for a connection accepted now. */
  current(): tls.SecureContext;
  /** The serving certificate's end of validity (ms since the epoch). */
  readonly notAfterMs: number;
  close(): void;
}

interface Loaded {
  readonly context: tls.SecureContext;
  readonly notAfterMs: number;
  readonly subject: string;
}

function load(files: TlsFiles): Loaded {
  const read = (variable: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new ConfigError(variable, `cannot be read: ${path} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  };
  const cert = read(CERT_VAR, files.certFile);
  const key = read(KEY_VAR, files.keyFile);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    throw new ConfigError(CERT_VAR, `must name a PEM certificate (chain) file: ${files.certFile} holds none`);
  }
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ cert, key });
  } catch (e) {
    // OpenSSL's own words ("key values mismatch", "no start line"...) say what is wrong.
    throw new ConfigError(KEY_VAR, `must name the PEM private key of ${files.certFile}: ${(e as Error).message}`);
  }
  return { context, notAfterMs: Date.parse(leaf.validTo), subject: leaf.subject.replace(/\n/g, ", ") };
}

export interface TlsContextOptions {
  /** How often the files' modification times are looked at. Default 10 s. */
  readonly checkEveryMs?: number;
  readonly registry?: Registry;
}

/** Reads the files now (a ConfigError naming the variable when they cannot serve) and follows their changes. */
export function watchTlsContext(files: TlsFiles, log: Logger, options: TlsContextOptions = {}): TlsContextSource {
  let loaded = load(files);
  log.info({ subject: loaded.subject, notAfter: new Date(loaded.notAfterMs).toISOString() }, "TLS certificate loaded");
  if (options.registry) {
    new Gauge({
      name: "gateway_tls_certificate_not_after_seconds",
      help: "End of validity of the public port's TLS certificate (unix time): alert well before it",
      registers: [options.registry],
      collect() {
        this.set(loaded.notAfterMs / 1000);
      },
    });
  }
  const reload = (): void => {
    try {
      loaded = load(files);
      log.info({ subject: loaded.subject, notAfter: new Date(loaded.notAfterMs).toISOString() }, "TLS certificate reloaded");
    } catch (e) {
      log.error({ err: (e as Error).message }, "TLS files changed but cannot be used: still serving the previous certificate");
    }
  };
  // A renewal writes the two files one after the other: each change re-reads both, so a pair
  // caught half-way is refused (mismatch) and the second write brings the matching pair.
  const onChange = (now: { mtimeMs: number }, before: { mtimeMs: number }): void => {
    if (now.mtimeMs !== before.mtimeMs) reload();
  };
  const interval = options.checkEveryMs ?? 10_000;
  watchFile(files.certFile, { interval, persistent: false }, onChange);
  watchFile(files.keyFile, { interval, persistent: false }, onChange);
  return {
    current: () => loaded.context,
    get notAfterMs() {
      return loaded.notAfterMs;
    },
    close() {
      unwatchFile(files.certFile, onChange);
      unwatchFile(files.keyFile, onChange);
    },
  };
}
