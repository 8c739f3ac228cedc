import { describe, expect, it } from "vitest";
import { type BucketEntry, SettledBuckets } from "./settled-buckets.js";

const B = 1000; // bucket length in these tests
const SETTLE = 300;
const SKEW = 50;

function setup(nowAt: number, maxChannels = 100) {
  const clock = { now: nowAt };
  const loads: string[] = [];
  const index = new Map<string, BucketEntry[]>();
  const settled = new SettledBuckets({ bucketMs: B, settleMs: SETTLE, skewMs: SKEW, maxChannels, now: () => clock.now });
  const get = (ch: string) =>
    settled.buckets(ch, async () => {
      loads.push(ch);
      await Promise.resolve();
      return index.get(ch) ?? [];
    });
  return { clock, loads, index, settled, get };
}

const entry = (bucket: number, messages = true, changes = false): BucketEntry => ({ bucket, messages, changes });
const open = (...buckets: number[]) => buckets.map((b) => entry(b, true, true));

describe("SettledBuckets", () => {
  it("lists the settled buckets from the index and every open bucket, flagged as possibly holding both", async () => {
    // now 10,100: buckets ending more than 300 ago (<= 8) have settled; 9 and 10 are open.
    const t = setup(10_100);
    t.index.set("c", [entry(2), entry(5, false, true), entry(9), entry(10)]);
    expect(await t.get("c")).toEqual([entry(2), entry(5, false, true), ...open(9, 10)]);
  });

  it("an open bucket the index does not list is still read (another server may be writing it)", async () => {
    const t = setup(10_100);
    t.index.set("c", [entry(3)]);
    expect(await t.get("c")).toEqual([entry(3), ...open(9, 10)]);
  });

  it("the bucket after this one is open while another clock may already be in it", async () => {
    const t = setup(10_960);
    expect((await t.get("c")).map((e) => e.bucket)).toEqual([10, 11]);
  });

  it("reads the index once per channel while no bucket settles, then again", async () => {
    const t = setup(10_100);
    t.index.set("c", [entry(2)]);
    await t.get("c");
    await t.get("c");
    t.clock.now = 10_290; // bucket 9 still open (ends 10,000 + 300 settle)
    await t.get("c");
    expect(t.loads).toEqual(["c"]);
    t.clock.now = 10_301; // bucket 9 settled
    t.index.set("c", [entry(2), entry(9)]);
    expect(await t.get("c")).toEqual([entry(2), entry(9), ...open(10)]);
    expect(t.loads).toEqual(["c", "c"]);
  });

  it("concurrent first reads of a channel share one index read", async () => {
    const t = setup(10_100);
    t.index.set("c", [entry(1)]);
    const all = await Promise.all([t.get("c"), t.get("c"), t.get("c")]);
    expect(t.loads).toEqual(["c"]);
    for (const r of all) expect(r).toEqual([entry(1), ...open(9, 10)]);
  });

  it("a failed index read is not cached", async () => {
    const t = setup(10_100);
    await expect(t.settled.buckets("c", () => Promise.reject(new Error("down")))).rejects.toThrow("down");
    t.index.set("c", [entry(4)]);
    expect(await t.get("c")).toEqual([entry(4), ...open(9, 10)]);
  });

  it("forgets the least recently used channel beyond its size", async () => {
    const t = setup(10_100, 2);
    await t.get("a");
    await t.get("b");
    await t.get("a");
    await t.get("c"); // evicts b
    await t.get("a");
    await t.get("b");
    expect(t.loads).toEqual(["a", "b", "c", "b"]);
  });

  it("this process's own write into a settled bucket shows in the cached list; one into an open bucket changes nothing", async () => {
    const t = setup(10_100);
    t.index.set("c", [entry(2), entry(6)]);
    await t.get("c");
    t.settled.noteWrite("c", 4, "messages");
    t.settled.noteWrite("c", 6, "changes");
    t.settled.noteWrite("c", 0, "changes");
    t.settled.noteWrite("c", 8, "messages");
    t.settled.noteWrite("c", 2, "messages"); // already listed
    t.settled.noteWrite("c", 10, "messages"); // open
    t.settled.noteWrite("other", 1, "messages"); // not cached: the next load reads it from the index
    expect(await t.get("c")).toEqual([entry(0, false, true), entry(2), entry(4), entry(6, true, true), entry(8), ...open(9, 10)]);
    expect(t.loads).toEqual(["c"]);
  });
});
