// Shortener.bulk on its own ports (no servers): the 10,000-item cap reports everything stored.
import { describe, expect, it } from "vitest";
import { MemoryLinkStore } from "../links/adapters/memory-link-store.js";
import { MAX_BULK_ITEMS, Shortener, type BulkItem } from "./service.js";

function shortener(store = new MemoryLinkStore()) {
  let n = 0;
  const codes = { next: async () => `g${(n++).toString(36).padStart(6, "0")}` };
  return new Shortener({ store, codes, policy: { ownHosts: ["sb.example"], blockedDomains: new Set() } });
}

async function* streamOf(xs: Iterable<BulkItem>): AsyncGenerator<BulkItem> {
  for (const x of xs) yield x;
}

describe("Shortener.bulk", () => {
  it("over the cap: stops reading at item 10,000, truncated, and the results are exactly what the store holds", async () => {
    const store = new MemoryLinkStore();
    let read = 0;
    const items = (function* () {
      for (let i = 0; i < MAX_BULK_ITEMS + 500; i++) {
        read++;
        yield { itemId: `i${i}`, longUrl: `https://example.com/${i}` };
      }
    })();
    const out = await shortener(store).bulk("u", streamOf(items));
    expect(out.truncated).toBe(true);
    expect(out.results).toHaveLength(MAX_BULK_ITEMS);
    expect(read).toBeLessThanOrEqual(MAX_BULK_ITEMS + 1);
    const stored = await store.listByOwner("u", MAX_BULK_ITEMS + 500);
    const reported = out.results.flatMap((r) => ("link" in r ? [r.link.code] : []));
    expect(reported).toHaveLength(MAX_BULK_ITEMS);
    expect(new Set(stored.links.map((l) => l.code))).toEqual(new Set(reported));
  });

  it("under the cap nothing is truncated", async () => {
    const items = Array.from({ length: 3 }, (_, i) => ({ itemId: `k${i}`, longUrl: "https://example.com/" }));
    const out = await shortener().bulk("u", streamOf(items));
    expect([out.truncated, out.results.length]).toEqual([false, 3]);
  });

  it("an invalid item id is echoed cut to 128 characters", async () => {
    const huge = "\u0001".repeat(10_000);
    const out = await shortener().bulk("u", streamOf([{ itemId: huge, longUrl: "https://example.com/" }]));
    expect(out.results[0]!.itemId).toHaveLength(128);
    expect("error" in out.results[0]! && out.results[0].error.message).toMatch(/item_id/);
  });
});
