// ClickBatchWriter: the bytes protobuf-es writes for the same ClickBatch, with no allocation per click.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { ClickBatchSchema, ClickEventSchema, UserAgentClass, type ClickEvent } from "../gen/switchboard/events/v1/events_pb.js";
import { ClickBatchWriter } from "./click-batch-writer.js";

const utf8 = new TextEncoder();

interface Click {
  eventId: string;
  code: string;
  seconds: number;
  nanos: number;
  referrer: string;
  cls: UserAgentClass;
  country: string;
  head: boolean;
  gatewayId: string;
  ownerId: string;
  createdAtMs: number;
}

const base: Click = {
  eventId: "Qm9vLWJhc2U2NHVybA.1a",
  code: "b000042",
  seconds: 1_796_550_286,
  nanos: 754_000_000,
  referrer: "news.example.org",
  cls: UserAgentClass.HUMAN,
  country: "",
  head: false,
  gatewayId: "gw-1",
  ownerId: "owner-7",
  createdAtMs: 1_795_000_000_123,
};

/** The writer takes the event id as prefix bytes and a counter: "<prefix>.<base 36>". */
function write(w: ClickBatchWriter, c: Click): void {
  const dot = c.eventId.lastIndexOf(".");
  const seq = parseInt(c.eventId.slice(dot + 1), 36);
  expect(seq.toString(36)).toBe(c.eventId.slice(dot + 1));
  w.append(utf8.encode(c.eventId.slice(0, dot)), seq, c.code, c.seconds, c.nanos, c.referrer === "" ? null : utf8.encode(c.referrer), c.cls, c.country, c.head, utf8.encode(c.gatewayId), c.ownerId, c.createdAtMs);
}

function event(c: Click): ClickEvent {
  return create(ClickEventSchema, {
    eventId: c.eventId,
    code: c.code,
    time: create(TimestampSchema, { seconds: BigInt(c.seconds), nanos: c.nanos }),
    referrer: c.referrer,
    userAgentClass: c.cls,
    country: c.country,
    isHead: c.head,
    gatewayId: c.gatewayId,
    linkOwnerId: c.ownerId,
    linkCreateTimeMs: BigInt(c.createdAtMs),
  });
}

const cases: [string, Click][] = [
  ["a stamped human click with a referrer", base],
  ["no referrer, a bot, a HEAD request", { ...base, referrer: "", cls: UserAgentClass.BOT, head: true }],
  ["with a country", { ...base, country: "DE" }],
  ["with a country, a bot, a HEAD request and no referrer", { ...base, country: "BR", referrer: "", cls: UserAgentClass.BOT, head: true }],
  ["unstamped (no owner)", { ...base, ownerId: "", createdAtMs: 0 }],
  ["no gateway id", { ...base, gatewayId: "" }],
  ["a whole second (no nanos)", { ...base, nanos: 0 }],
  ["an event counter of 0", { ...base, eventId: "p.0" }],
  ["an event counter past 2^32", { ...base, eventId: `p.${(2 ** 40 + 7).toString(36)}` }],
  ["seconds past 2^32 and a creation time past 2^32", { ...base, seconds: 2 ** 33 + 5, createdAtMs: 2 ** 52 + 3 }],
  ["seconds before 1970 (int64 in ten bytes)", { ...base, seconds: -86_400 }],
  ["non-ASCII code, owner and referrer", { ...base, code: "café-ü", ownerId: "владелец-😀", referrer: "bücher.example" }],
  ["strings and an event of 128 bytes and more (two-byte lengths)", { ...base, ownerId: "o".repeat(200), referrer: "r".repeat(255), code: "c".repeat(127) }],
  ["an event over 16 KB (three-byte lengths)", { ...base, ownerId: "x".repeat(20_000) }],
];

describe("ClickBatchWriter", () => {
  it.each(cases)("writes what protobuf-es writes: %s", (_name, click) => {
    const w = new ClickBatchWriter();
    write(w, click);
    expect(Buffer.from(w.finish()).toString("hex")).toBe(Buffer.from(toBinary(ClickBatchSchema, create(ClickBatchSchema, { clicks: [event(click)] }))).toString("hex"));
  });

  it("a batch of many clicks grows past its first buffer and decodes click for click; finish() starts a new batch", () => {
    const w = new ClickBatchWriter();
    const clicks = Array.from({ length: 3_000 }, (_, i): Click => ({
      ...base,
      eventId: `${base.eventId.slice(0, -2)}${i.toString(36)}`,
      code: `b${String(i).padStart(6, "0")}`,
      referrer: i % 3 === 0 ? "" : `site-${i % 50}.example`,
      head: i % 7 === 0,
      ownerId: i % 5 === 0 ? "" : `owner-${i}`,
      createdAtMs: i % 5 === 0 ? 0 : base.createdAtMs + i,
    }));
    for (const c of clicks) write(w, c);
    const bytes = w.finish();
    expect(bytes.length).toBeGreaterThan(64 * 1024);
    expect(Buffer.from(bytes).equals(Buffer.from(toBinary(ClickBatchSchema, create(ClickBatchSchema, { clicks: clicks.map(event) }))))).toBe(true);
    expect(fromBinary(ClickBatchSchema, bytes).clicks.map((c) => c.code)).toEqual(clicks.map((c) => c.code));

    write(w, base);
    expect(fromBinary(ClickBatchSchema, w.finish()).clicks).toHaveLength(1);
    expect(w.finish()).toHaveLength(0);
  });

  it("the batch handed out is a copy: later clicks do not change it", () => {
    const w = new ClickBatchWriter();
    write(w, base);
    const first = w.finish();
    const before = Buffer.from(first).toString("hex");
    write(w, { ...base, code: "zzzzzzz" });
    w.finish();
    expect(Buffer.from(first).toString("hex")).toBe(before);
  });
});
