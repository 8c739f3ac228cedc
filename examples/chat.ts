/**
 * A chat client on the generated TypeScript SDK: opens a direct channel with a peer, listens on
 * its device's live stream, sends a message and waits for it to come back on the stream (a
 * user's own devices receive what they send too). A real app would also Sync from its saved
 * cursor once the stream's first event (a keep-alive) says it is attached.
 *
 *   TOKEN=$(npx tsx cmd/switchboard.ts dev-token alice) npx tsx examples/chat.ts bob [http://127.0.0.1:8080]
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { randomUUID } from "node:crypto";
import { ChatService } from "../gen/switchboard/chat/v1/chat_pb.js";

const peer = process.argv[2] ?? "bob";
const baseUrl = process.argv[3] ?? "http://127.0.0.1:8080";
const chat = createClient(
  ChatService,
  createConnectTransport({
    baseUrl,
    httpVersion: "2",
    interceptors: [
      (next) => (req) => {
        req.header.set("authorization", `Bearer ${process.env.TOKEN ?? ""}`);
        return next(req);
      },
    ],
  }),
);

const stop = new AbortController();
try {
  const { channel } = await chat.createDirectChannel({ peerUserId: peer });
  const channelId = channel!.channelId;
  console.log(`channel ${channelId} with ${peer}`);
  let attached!: () => void;
  const ready = new Promise<void>((resolve) => (attached = resolve));
  const received = (async () => {
    for await (const res of chat.subscribe({ deviceId: "example-cli" }, { signal: stop.signal })) {
      for (const e of res.events) {
        if (e.event.case === "keepAlive") attached();
        if (e.event.case === "message" && e.event.value.channelId === channelId) return e.event.value;
      }
    }
    throw new Error("the stream ended");
  })();
  await ready;
  // The client message id makes a retry after a cut connection return the same message.
  const sent = await chat.sendMessage({ channelId, clientMessageId: randomUUID(), text: `hello ${peer}` });
  console.log(`sent ${sent.message!.messageId} (stored before this answer)`);
  const echo = await received;
  console.log(`live: ${echo.senderId}: ${echo.text} (${echo.messageId})`);
} catch (e) {
  const err = ConnectError.from(e);
  console.error(`failed: ${Code[err.code]}: ${err.rawMessage}`);
  process.exitCode = 1;
} finally {
  stop.abort();
}
