/**
 * Retry-After (RFC 9110 section 10.2.3): delay-seconds or an HTTP-date. Providers pass it on so
 * the worker waits at least as long as the push service asked; a date in the past means "now".
 */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number): number | undefined {
  const raw = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!raw) return undefined;
  if (/^\d+$/.test(raw)) return Number(raw) * 1000;
  // Every HTTP-date form names a day or month; Date.parse alone would take "-5" for a year.
  if (!/[a-z]{3}/i.test(raw)) return undefined;
  const at = Date.parse(raw);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}
