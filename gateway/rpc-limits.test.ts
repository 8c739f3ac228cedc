import { describe, expect, it } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ChatService } from "../gen/switchboard/chat/v1/chat_pb.js";
import { RedirectService } from "../gen/switchboard/redirect/v1/redirect_pb.js";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";
import { ConfigError } from "../platform/config.js";
import { createMessageLimits } from "./rpc-limits.js";

const method = (s: typeof ShortenerService | typeof RedirectService | typeof Health | typeof ChatService, name: string) => s.methods.find((m) => m.name === name)!;

describe("per-method message limits", () => {
  it("uses the built-in sizes, then the default, and lets operators override either", () => {
    const limits = createMessageLimits([ShortenerService, RedirectService, Health], 16_384, {
      "switchboard.shortener.v1.ShortenerService/CreateLink": 4096,
    });
    expect(limits.readMaxBytes(RedirectService, method(RedirectService, "Resolve"))).toBe(1024);
    expect(limits.readMaxBytes(Health, method(Health, "Check"))).toBe(1024);
    expect(limits.readMaxBytes(ShortenerService, method(ShortenerService, "ListLinks"))).toBe(16_384);
    expect(limits.readMaxBytes(ShortenerService, method(ShortenerService, "CreateLink"))).toBe(4096);
  });

  it("refuses an override naming a method the gateway does not serve", () => {
    expect(() => createMessageLimits([ShortenerService], 16_384, { "switchboard.shortener.v1.ShortenerService/CreateLinks": 1 })).toThrow(ConfigError);
    expect(() => createMessageLimits([ShortenerService], 16_384, { "switchboard.shortener.v1.ShortenerService/CreateLinks": 1 })).toThrow(
      /SWITCHBOARD_GATEWAY_METHOD_MAX_BYTES names switchboard.shortener.v1.ShortenerService\/CreateLinks/,
    );
  });

  it("chat: 1 MiB for a message text (SendMessage, Session frames), 64 KiB for member lists, 4 KiB for id-only calls, the default for paged calls", () => {
    const limits = createMessageLimits([ChatService], 16_384);
    const of = (name: string) => limits.readMaxBytes(ChatService, method(ChatService, name));
    expect(of("SendMessage")).toBe(1024 * 1024);
    expect(of("Session")).toBe(1024 * 1024);
    expect(of("CreateGroupChannel")).toBe(64 * 1024);
    expect(of("AddMembers")).toBe(64 * 1024);
    for (const m of ["CreateDirectChannel", "GetChannel", "RemoveMember", "LeaveChannel", "MarkRead", "MarkDelivered", "DeleteMessage", "SendTyping", "Subscribe", "Relay"]) {
      expect([m, of(m)]).toEqual([m, 4096]);
    }
    for (const m of ["ListMyChannels", "GetHistory", "Sync"]) expect([m, of(m)]).toEqual([m, 16_384]);
    // Every chat method has a deliberate size: a new method shows up here.
    expect(ChatService.methods.length).toBe(17);
  });

  it("chat limits hold what the contract allows: 100,000 code points in protobuf and escaped JSON; 100 user ids of 256 characters", () => {
    const astral = "\u{1F600}".repeat(100_000); // 4 UTF-8 bytes each
    const controls = "\u0001".repeat(100_000); // 6 bytes each as a JSON escape
    expect(Buffer.byteLength(astral, "utf8") + 1_000).toBeLessThan(1024 * 1024);
    expect(JSON.stringify({ channelId: "c".repeat(64), clientMessageId: "m".repeat(64), text: controls }).length).toBeLessThan(1024 * 1024);
    const ids = Array.from({ length: 100 }, (_, i) => `"${i}`.padEnd(256, '\\'));
    expect(JSON.stringify({ channelId: "c".repeat(64), userIds: ids }).length).toBeLessThan(64 * 1024);
  });

  it("operators still override a chat size", () => {
    const limits = createMessageLimits([ChatService], 16_384, { "switchboard.chat.v1.ChatService/SendMessage": 256 * 1024 });
    expect(limits.readMaxBytes(ChatService, method(ChatService, "SendMessage"))).toBe(256 * 1024);
  });
});
