import zlib from "node:zlib";
import { describe, expect, it } from "vitest";
import { checkBrotliHeader } from "./brotli-header.js";

const br = (data: Buffer, lgwin?: number) =>
  zlib.brotliCompressSync(data, lgwin === undefined ? {} : { params: { [zlib.constants.BROTLI_PARAM_LGWIN]: lgwin } });

describe("brotli stream header check", () => {
  it("accepts what ordinary encoders produce for messages within the limit", () => {
    for (const data of [Buffer.from('{"code":"abc"}'), Buffer.alloc(16_000, 0x61), Buffer.alloc(0)]) {
      for (const lgwin of [undefined, 10, 16, 22]) {
        const stream = br(data, lgwin);
        expect(checkBrotliHeader(stream, 16_384), `${data.length} bytes, lgwin ${lgwin}`).toEqual({ ok: true });
        expect(zlib.brotliDecompressSync(stream).equals(data)).toBe(true);
      }
    }
  });

  it("refuses a bomb from its first meta-block header, before inflating", () => {
    const bomb = br(Buffer.from("[".repeat(4_000_000)));
    expect(bomb.length).toBeLessThan(40);
    expect(checkBrotliHeader(bomb, 1024)).toMatchObject({ ok: false, tooLarge: true, reason: expect.stringMatching(/readMaxBytes 1024/) });
    expect(checkBrotliHeader(br(Buffer.alloc(17_000, 0x61)), 16_384)).toMatchObject({ ok: false, tooLarge: true });
  });

  it("refuses windows over 4 MiB, which no gateway message needs", () => {
    expect(checkBrotliHeader(br(Buffer.from("hi"), 24), 16_384)).toMatchObject({ ok: false, tooLarge: false, reason: expect.stringMatching(/window of 2\^24/) });
  });

  it("leaves truncated or empty input to the decoder", () => {
    expect(checkBrotliHeader(new Uint8Array(0), 16)).toEqual({ ok: true });
    expect(checkBrotliHeader(br(Buffer.from("[".repeat(100_000))).subarray(0, 1), 16)).toEqual({ ok: true });
  });
});
