/**
 * Brotli's worst case, checked before inflating. The decoder fills its ring buffer (up to the
 * stream's declared window, 2^WBITS bytes) before it hands out any output, so a limit on output
 * size (maxOutputLength) stops a 14-byte bomb only after megabytes of work: 4 MB of "[" costs
 * ~50 ms of CPU per request however small the limit. Reading the stream header (RFC 7932 §9)
 * lets the gateway refuse such streams for free: a window over 4 MiB (libbrotli's default is
 * 4 MiB; larger windows only serve inputs no gateway method accepts), and leading meta-blocks
 * that declare more output than the method's limit. What a crafted stream can still cost is
 * bounded by the 4 MiB window, and runs on the thread pool, not the event loop.
 */
export const MAX_BROTLI_WINDOW_BITS = 22;

export type BrotliVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly tooLarge: boolean; readonly reason: string };

class Bits {
  private bit = 0;
  constructor(private readonly bytes: Uint8Array) {}
  /** undefined when the input ends first (the decoder reports truncation itself). */
  read(n: number): number | undefined {
    let v = 0;
    for (let i = 0; i < n; i++) {
      const byte = this.bytes[this.bit >> 3];
      if (byte === undefined) return undefined;
      v |= ((byte >> (this.bit & 7)) & 1) << i;
      this.bit++;
    }
    return v;
  }
  skipBytes(n: number): boolean {
    this.bit = ((this.bit + 7) & ~7) + n * 8;
    return this.bit <= this.bytes.length * 8;
  }
}

function windowBits(r: Bits): number | undefined {
  const first = r.read(1);
  if (first === undefined) return undefined;
  if (first === 0) return 16;
  const n = r.read(3);
  if (n === undefined) return undefined;
  if (n !== 0) return 17 + n;
  const m = r.read(3);
  if (m === undefined) return undefined;
  if (m === 1) return 99; // large-window brotli, not RFC 7932: refused below
  return m === 0 ? 17 : 8 + m;
}

/** Checks the window and the meta-block headers up to the first compressed one. */
export function checkBrotliHeader(data: Uint8Array, readMaxBytes: number): BrotliVerdict {
  const r = new Bits(data);
  const wbits = windowBits(r);
  if (wbits === undefined) return { ok: true };
  if (wbits > MAX_BROTLI_WINDOW_BITS) {
    return { ok: false, tooLarge: false, reason: `brotli window of 2^${wbits} bytes is not accepted (at most 2^${MAX_BROTLI_WINDOW_BITS})` };
  }
  let declared = 0;
  for (;;) {
    const isLast = r.read(1);
    if (isLast === undefined) return { ok: true };
    if (isLast === 1) {
      const empty = r.read(1);
      if (empty === undefined || empty === 1) return { ok: true };
    }
    const nibbleCode = r.read(2);
    if (nibbleCode === undefined) return { ok: true };
    if (nibbleCode === 3) {
      // Metadata block: no output; skip it and read the next header.
      if (r.read(1) === undefined) return { ok: true };
      const skipBytes = r.read(2);
      if (skipBytes === undefined) return { ok: true };
      let skipLen = 0;
      if (skipBytes > 0) {
        const v = r.read(8 * skipBytes);
        if (v === undefined) return { ok: true };
        skipLen = v + 1;
      }
      if (!r.skipBytes(skipLen) || isLast === 1) return { ok: true };
      continue;
    }
    const mlenMinus1 = r.read(4 * (nibbleCode + 4));
    if (mlenMinus1 === undefined) return { ok: true };
    declared += mlenMinus1 + 1;
    if (declared > readMaxBytes) {
      return { ok: false, tooLarge: true, reason: `message is larger than configured readMaxBytes ${readMaxBytes} after decompression (brotli declares at least ${declared} bytes)` };
    }
    if (isLast === 1) return { ok: true };
    const uncompressed = r.read(1);
    if (uncompressed !== 1) return { ok: true };
    if (!r.skipBytes(mlenMinus1 + 1)) return { ok: true };
  }
}
