/**
 * Building blocks of the chat unit tests: a controllable clock, a minter on a fixed worker id,
 * and Chat instances ("servers") on a shared MemoryChatStore. Test-only (imported by *.test.ts).
 */
import type { ChatConfig } from "../../platform/config.js";
import { SnowflakeGenerator } from "../tokenrange/snowflake.js";
import { fixedWorkerId } from "../tokenrange/worker-id.js";
import { LocalDelivery } from "./adapters/local-delivery.js";
import { MemoryChatStore } from "./adapters/memory-chat-store.js";
import { Chat } from "./chat.js";
import type { ChatStore, Delivery, IdMinter } from "./ports.js";

export const testConfig = (over: Partial<ChatConfig> = {}): ChatConfig => ({
  maxGroupMembers: 100,
  maxChannelsPerUser: 1_000,
  settleWindowMs: 5_000,
  writeTimeoutMs: 2_000,
  keepAliveMs: 25_000,
  outboxEvents: 1_000,
  sessionInFlight: 32,
  typingPerWindow: 5,
  typingWindowMs: 5_000,
  retentionDays: 0,
  drainWindowMs: 5_000,
  memberListMs: 1_000,
  ...over,
});

export class TestClock {
  constructor(public t = Date.UTC(2026, 0, 1)) {}
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

/** A minter on a fixed worker id; `minted` lists every id it issued. */
export function testMinter(worker: number, clock: TestClock): IdMinter & { minted: bigint[] } {
  const gen = new SnowflakeGenerator({ worker: fixedWorkerId(worker), now: clock.now });
  const minted: bigint[] = [];
  return {
    minted,
    next() {
      const id = gen.next();
      minted.push(id);
      return id;
    },
  };
}

export interface TestServer {
  readonly chat: Chat;
  readonly delivery: LocalDelivery;
  readonly ids: IdMinter & { minted: bigint[] };
}

export function testServer(opts: { store: ChatStore; clock: TestClock; worker?: number; config?: Partial<ChatConfig>; delivery?: LocalDelivery }): TestServer {
  const ids = testMinter(opts.worker ?? 1, opts.clock);
  const delivery = opts.delivery ?? new LocalDelivery();
  return { chat: new Chat({ store: opts.store, ids, delivery: delivery as Delivery, config: testConfig(opts.config), now: opts.clock.now }), delivery, ids };
}

export function testWorld(config?: Partial<ChatConfig>) {
  const clock = new TestClock();
  const store = new MemoryChatStore(clock.now);
  return { clock, store, ...testServer({ store, clock, ...(config ? { config } : {}) }) };
}

/**
 * A store whose methods can be intercepted: `before[method]` runs (and is awaited) before the
 * real call, e.g. to hold a write or move the clock mid-call.
 */
export function interceptedStore(store: ChatStore, before: Partial<Record<keyof ChatStore, (...args: never[]) => Promise<void> | void>>): ChatStore {
  return new Proxy(store, {
    get(target, p, receiver) {
      const v = Reflect.get(target, p, receiver) as unknown;
      if (typeof v !== "function") return v;
      const hook = before[p as keyof ChatStore] as ((...a: unknown[]) => Promise<void> | void) | undefined;
      return async (...args: unknown[]) => {
        if (hook) await hook(...args);
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
