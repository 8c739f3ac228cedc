import { create, toBinary } from "@bufbuild/protobuf";
import { SessionResponseSchema, ChatEventSchema } from "../gen/switchboard/chat/v1/chat_pb.js";
const ev = create(ChatEventSchema, { event: { case: "message", value: { channelId: "ch-123456789", messageId: 123456789012345n, senderId: "bench-xs-abc-u12", clientMessageId: "measured:1234", text: "bench measured 1234", createdAt: { seconds: 1n, nanos: 5 } } }, cursor: 123456789012345n } as never);
const n = 200000;
for (let k = 0; k < 3; k++) {
  const t = performance.now();
  for (let i = 0; i < n; i++) toBinary(SessionResponseSchema, create(SessionResponseSchema, { frame: { case: "events", value: { events: [ev] } } }));
  console.log(((performance.now() - t) * 1000 / n).toFixed(2), "us per SessionResponse");
}
