/**
 * A Subscribe response as a live feed hands it to the edge: decoded (the in-process hop, a chat
 * server that sends RelayFrame.response, the gateway's own keep-alives) or as the chat server
 * serialized it (RelayFrame.encoded), which the subscribe door writes to binary clients without
 * decoding and encoding it again (bench/README.md, "relayed events serialized once").
 */
import { fromBinary } from "@bufbuild/protobuf";
import { SubscribeResponseSchema, type SubscribeResponse } from "../gen/switchboard/chat/v1/chat_pb.js";

export interface EncodedResponse {
  /** A SubscribeResponse in the protobuf binary format. */
  readonly encoded: Uint8Array;
  readonly eventCount: number;
}

export type RelayedResponse = SubscribeResponse | EncodedResponse;

export function isEncoded(r: RelayedResponse): r is EncodedResponse {
  return "encoded" in r;
}

export function eventCountOf(r: RelayedResponse): number {
  return isEncoded(r) ? r.eventCount : r.events.length;
}

export function decodedResponse(r: RelayedResponse): SubscribeResponse {
  return isEncoded(r) ? fromBinary(SubscribeResponseSchema, r.encoded) : r;
}

/** For callers that need messages (connect-node's handlers): each response decoded. */
export async function* decodedResponses(responses: AsyncIterable<RelayedResponse>): AsyncGenerator<SubscribeResponse> {
  for await (const r of responses) yield decodedResponse(r);
}
