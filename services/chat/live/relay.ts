/**
 * The chat server's end of ChatService.Relay: many devices' Subscribe streams on one call from a
 * gateway. Each relayed stream is the same DeviceStream a Subscribe call holds (same delivery,
 * same bounded outbox, same ends: replaced, slow consumer, draining), without an RPC, an HTTP/2
 * stream, a generator or a keep-alive timer of its own: at 50,000 idle subscribers those were
 * most of a stream's memory on both sides (bench/README.md, chat-idle).
 *
 * Writing follows the call's flow control: frames are taken from the streams only when the
 * previous response was written, so a gateway that cannot keep up leaves events in the streams'
 * bounded outboxes (which end as slow consumers), never in an unbounded queue here.
 */
import { create } from "@bufbuild/protobuf";
import type { KeyObject } from "node:crypto";
import type { Logger } from "pino";
import {
  RelayFrameSchema,
  RelayResponseSchema,
  type RelayFrame,
  type RelayRequest,
  type RelayResponse,
} from "../../../gen/switchboard/chat/v1/chat_pb.js";
import { DomainError } from "../../../platform/errors.js";
import { grpcStatus } from "../../../platform/grpc/service-definition.js";
import { retryAfterMsOf, toConnectError } from "../../../platform/grpc/status.js";
import { verifyIdentityAssertion } from "../../../platform/identity-assertion.js";
import { validateDeviceId } from "../domain/validate.js";
import { eventBytesAtMost, keepAliveEvent, MAX_BATCH, MAX_BATCH_BYTES, type DeviceStream } from "./device-stream.js";
import { encodeSubscribeResponse } from "./encoded-events.js";

/** The method a relayed stream's identity assertion is signed for: it is a Subscribe. */
export const SUBSCRIBE_PATH = "/switchboard.chat.v1.ChatService/Subscribe";

/**
 * Refused opens waiting to be written, at most: a caller that keeps opening with bad assertions
 * and never reads its responses would otherwise grow this list without end.
 */
export const MAX_PENDING_REFUSALS = 10_000;

/** Events and about bytes in one RelayResponse at most (bound one write; the rest go in the next). */
const MAX_EVENTS_PER_RESPONSE = 1_024;
const MAX_BYTES_PER_RESPONSE = MAX_BATCH_BYTES;

/**
 * Verifies a relayed stream's identity assertion: only one signed with the mesh key for
 * Subscribe names a user (a captured assertion of another method does not open a stream).
 */
export function subscribeAssertionVerifier(key: KeyObject, log?: Logger): (assertion: string) => string | undefined {
  return (assertion) => {
    const check = verifyIdentityAssertion(key, assertion, SUBSCRIBE_PATH);
    if (check.ok) return check.identity.userId;
    log?.debug({ reason: check.reason }, "refused the identity assertion of a relayed stream");
    return undefined;
  };
}

export interface RelayHost {
  /** The user an assertion names, when it is valid for a Subscribe; undefined otherwise. */
  verify(assertion: string): string | undefined;
  /** Attaches a device stream as Subscribe does; throws a DomainError when it may not. */
  attach(userId: string, deviceId: string): { readonly stream: DeviceStream; readonly close: () => void };
  readonly log?: Logger;
}

interface Relayed {
  readonly id: bigint;
  readonly stream: DeviceStream;
  readonly close: () => void;
  /** The gateway takes this stream's responses serialized (RelayOpen.accept_encoded). */
  readonly encoded: boolean;
  /** In the ready list now. */
  ready: boolean;
}

const unauthenticated = (): DomainError => new DomainError("Unauthenticated", "this call needs credentials: a bearer token or an API key");

/** One Relay call: the streams it carries and the frames they have for the gateway. */
export class RelayCall {
  private readonly streams = new Map<bigint, Relayed>();
  /** Streams with events queued or an end to report, oldest first (from `head`). */
  private ready: Relayed[] = [];
  private head = 0;
  /** Ends of opens that were refused. */
  private refusals: RelayFrame[] = [];
  private wake: (() => void) | undefined;
  private finished: { readonly error: unknown } | undefined;

  constructor(private readonly host: RelayHost) {}

  /** Streams carried now (tests). */
  get size(): number {
    return this.streams.size;
  }

  handle(req: RelayRequest): void {
    if (this.finished) return;
    switch (req.frame.case) {
      case "open":
        this.open(req.streamId, req.frame.value.deviceId, req.frame.value.identityAssertion, req.frame.value.acceptEncoded);
        break;
      case "close":
        this.close(req.streamId);
        break;
      default:
        // A frame kind of a newer gateway: nothing to do with it here.
        break;
    }
  }

  /**
   * The call is over (the gateway left, half-closed, or its requests failed): every stream is
   * detached; `error` is what the call ends with.
   */
  finish(error?: unknown): void {
    if (this.finished) return;
    this.finished = { error };
    for (const r of this.streams.values()) r.close();
    this.streams.clear();
    this.ready = [];
    this.head = 0;
    this.signal();
  }

  /** The call's responses, as fast as they are written; ends when the call is finished. */
  async *responses(): AsyncGenerator<RelayResponse> {
    for (;;) {
      const frames = this.collect();
      if (frames.length > 0) {
        yield create(RelayResponseSchema, { frames });
        continue;
      }
      if (this.finished) {
        if (this.finished.error !== undefined) throw this.finished.error;
        return;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  private open(id: bigint, deviceId: string, assertion: string, encoded: boolean): void {
    if (this.streams.has(id)) {
      // A gateway reusing a live id has lost track of its streams: nothing on this call can be trusted.
      this.finish(new DomainError("InvalidArgument", `relay stream id ${id} is already open on this call`));
      return;
    }
    try {
      const userId = this.host.verify(assertion);
      if (userId === undefined) throw unauthenticated();
      validateDeviceId(deviceId);
      const device = this.host.attach(userId, deviceId);
      const r: Relayed = { id, stream: device.stream, close: device.close, encoded, ready: false };
      this.streams.set(id, r);
      device.stream.listen(() => this.markReady(r));
      // Attached: the first frame says so (as Subscribe's first response), ahead of any event.
      device.stream.push(keepAliveEvent());
    } catch (e) {
      if (this.refusals.length >= MAX_PENDING_REFUSALS) {
        this.finish(new DomainError("ResourceExhausted", `more than ${MAX_PENDING_REFUSALS} refused relay streams wait to be read`));
        return;
      }
      this.refusals.push(endFrame(id, e, this.host.log));
      this.signal();
    }
  }

  private close(id: bigint): void {
    const r = this.streams.get(id);
    if (!r) return;
    this.streams.delete(id);
    r.close();
  }

  private markReady(r: Relayed): void {
    if (r.ready) return;
    r.ready = true;
    this.ready.push(r);
    this.signal();
  }

  private collect(): RelayFrame[] {
    const frames = this.refusals;
    this.refusals = [];
    let events = 0;
    let bytes = 0;
    const end = this.ready.length;
    // Streams that still have events after their batch go to the back: one busy stream cannot
    // hold the others' frames back.
    while (this.head < end && events < MAX_EVENTS_PER_RESPONSE && bytes < MAX_BYTES_PER_RESPONSE) {
      const r = this.ready[this.head++]!;
      r.ready = false;
      if (this.streams.get(r.id) !== r) continue;
      const batch = r.stream.takeUpTo(Math.min(MAX_BATCH, MAX_EVENTS_PER_RESPONSE - events), MAX_BYTES_PER_RESPONSE - bytes);
      if (batch.length > 0) {
        frames.push(
          create(RelayFrameSchema, {
            streamId: r.id,
            frame: r.encoded
              ? { case: "encoded", value: { response: encodeSubscribeResponse(batch), events: batch.length } }
              : { case: "response", value: { events: batch } },
          }),
        );
        events += batch.length;
        for (const ev of batch) bytes += eventBytesAtMost(ev);
      }
      if (r.stream.queued > 0) {
        r.ready = true;
        this.ready.push(r);
      } else if (r.stream.ended) {
        frames.push(endFrame(r.id, r.stream.endError, this.host.log));
        this.streams.delete(r.id);
        r.close();
      }
    }
    if (this.head >= this.ready.length) {
      this.ready = [];
      this.head = 0;
    } else if (this.head > 1_024 && this.head * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.head);
      this.head = 0;
    }
    return frames;
  }

  private signal(): void {
    this.wake?.();
  }
}

/** A stream's end as a frame: the status Subscribe would have ended with. */
function endFrame(id: bigint, error: unknown, log: Logger | undefined): RelayFrame {
  if (error === undefined) return create(RelayFrameSchema, { streamId: id, frame: { case: "end", value: { code: 0, message: "" } } });
  const e = toConnectError(error, log);
  const retryAfterMs = retryAfterMsOf(e);
  return create(RelayFrameSchema, {
    streamId: id,
    frame: {
      case: "end",
      value: { code: grpcStatus(e.code), message: e.rawMessage, ...(retryAfterMs !== undefined ? { retryAfterMs: BigInt(retryAfterMs) } : {}) },
    },
  });
}
