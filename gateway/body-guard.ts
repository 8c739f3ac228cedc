/**
 * Checks every RPC request message before connect decodes it, so a client mistake is always
 * InvalidArgument (HTTP 400 on Connect) and never Internal.
 *
 * Connect reports a protobuf body that does not decode ("parse binary: ..."), a message nested
 * past the decoder's recursion limit, a compressed envelope without an encoding and a truncated
 * gzip/brotli stream as Internal (500). It does respect a ConnectError thrown while it reads the
 * request body, on every protocol, so the guard sits in the body: it splits envelopes with the
 * method's limit, inflates them with the same bounded decompressors connect uses, decodes binary
 * messages once with the method's input schema and passes the original bytes on. JSON is left to
 * connect, which already answers InvalidArgument for it. The extra work is one more decode of a
 * message that the per-method limit (rpc-limits.ts) keeps small.
 */
import { fromBinary, type DescMessage } from "@bufbuild/protobuf";
import { base64Decode } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { compressedFlag, encodeEnvelope, readAllBytes, transformSplitEnvelope, type Compression } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { checkBrotliHeader } from "./brotli-header.js";

export const ACCEPT_COMPRESSION: readonly Compression[] = [compressionGzip, compressionBrotli];

/** How a request's messages travel, read from its content type. */
export interface BodyShape {
  /** gRPC, gRPC-web and Connect streaming frame each message in a 5-byte envelope. */
  readonly enveloped: boolean;
  /** Protobuf binary (checked here) rather than JSON (checked by connect). */
  readonly binary: boolean;
  /** The header naming the compression of the messages. */
  readonly encodingHeader: string;
}

export function bodyShapeOf(contentType: string | null): BodyShape | undefined {
  const ct = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  const grpc = /^application\/grpc(?:-web)?(?:\+(proto|json))?$/.exec(ct);
  if (grpc) return { enveloped: true, binary: grpc[1] !== "json", encodingHeader: "grpc-encoding" };
  const stream = /^application\/connect\+(proto|json)$/.exec(ct);
  if (stream) return { enveloped: true, binary: stream[1] === "proto", encodingHeader: "connect-content-encoding" };
  if (ct === "application/proto" || ct === "application/json") {
    return { enveloped: false, binary: ct === "application/proto", encodingHeader: "content-encoding" };
  }
  return undefined; // connect answers 415 for it
}

export interface GuardOptions {
  readonly input: DescMessage;
  readonly readMaxBytes: number;
  /** Value of the encoding header (absent / "identity" = none). */
  readonly encoding: string | null;
  /** Content-Length of a unary body, when given. */
  readonly contentLength?: string | null;
}

/** The request body as connect should read it: the same bytes, or a ConnectError saying what is wrong. */
export function guardBody(body: AsyncIterable<Uint8Array>, shape: BodyShape, opts: GuardOptions): AsyncIterable<Uint8Array> {
  return shape.enveloped ? guardEnvelopes(body, shape, opts) : guardUnary(body, shape, opts);
}

async function* guardEnvelopes(body: AsyncIterable<Uint8Array>, shape: BodyShape, opts: GuardOptions): AsyncIterable<Uint8Array> {
  const compression = compressionFor(opts.encoding);
  for await (const envelope of transformSplitEnvelope(opts.readMaxBytes)(body)) {
    let data = envelope.data;
    if ((envelope.flags & compressedFlag) === compressedFlag) {
      if (compression === null) {
        throw new ConnectError(`a message is flagged compressed but ${shape.encodingHeader} names no compression`, Code.InvalidArgument);
      }
      // Unsupported encodings are connect's to refuse (Unimplemented, listing what it accepts).
      if (compression === undefined) {
        yield encodeEnvelope(envelope.flags, envelope.data);
        continue;
      }
      data = await inflate(compression, data, opts.readMaxBytes);
    }
    if (shape.binary) checkBinary(opts.input, data);
    yield encodeEnvelope(envelope.flags, envelope.data);
  }
}

async function* guardUnary(body: AsyncIterable<Uint8Array>, shape: BodyShape, opts: GuardOptions): AsyncIterable<Uint8Array> {
  const raw = await readAllBytes(body, opts.readMaxBytes, opts.contentLength ?? null);
  const compression = compressionFor(opts.encoding);
  if (compression === undefined) {
    yield raw;
    return;
  }
  const data = compression === null ? raw : await inflate(compression, raw, opts.readMaxBytes);
  if (shape.binary) checkBinary(opts.input, data);
  yield raw;
}

/**
 * A Connect GET carries its message in the query. Returns the error to answer, or undefined when
 * connect may decode it. Checks what connect would otherwise report as Internal: base64 that is
 * not base64, a truncated compressed message, a protobuf message that does not decode.
 */
export async function checkGetMessage(input: DescMessage, query: URLSearchParams, readMaxBytes: number): Promise<ConnectError | undefined> {
  try {
    const message = query.get("message") ?? "";
    let bytes: Uint8Array;
    if (query.get("base64") === "1") {
      if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(message) || message.replace(/=+$/, "").length % 4 === 1) {
        throw new ConnectError("the message query parameter is not valid base64", Code.InvalidArgument);
      }
      bytes = base64Decode(message);
    } else {
      bytes = new TextEncoder().encode(message);
    }
    if (bytes.byteLength > readMaxBytes) {
      throw new ConnectError(`message size ${bytes.byteLength} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
    }
    const compression = compressionFor(query.get("compression"));
    if (compression === undefined) return undefined;
    const data = compression === null ? bytes : await inflate(compression, bytes, readMaxBytes);
    if (query.get("encoding") === "proto") checkBinary(input, data);
    return undefined;
  } catch (e) {
    return ConnectError.from(e, Code.InvalidArgument);
  }
}

/** null = no compression; undefined = one connect does not accept (it answers for it). */
function compressionFor(name: string | null): Compression | null | undefined {
  if (name === null || name === "" || name === "identity") return null;
  return ACCEPT_COMPRESSION.find((c) => c.name === name);
}

async function inflate(compression: Compression, data: Uint8Array, readMaxBytes: number): Promise<Uint8Array> {
  if (compression.name === "br") {
    const verdict = checkBrotliHeader(data, readMaxBytes);
    if (!verdict.ok) throw new ConnectError(verdict.reason, verdict.tooLarge ? Code.ResourceExhausted : Code.InvalidArgument);
  }
  try {
    return await compression.decompress(data, readMaxBytes);
  } catch (e) {
    const err = ConnectError.from(e);
    if (err.code === Code.ResourceExhausted) throw err;
    throw new ConnectError(`the message is not valid ${compression.name} data`, Code.InvalidArgument);
  }
}

function checkBinary(input: DescMessage, data: Uint8Array): void {
  try {
    // Validation only: unknown fields need not be kept (connect's decode keeps them).
    fromBinary(input, data, { readUnknownFields: false });
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new ConnectError(`the request is not a valid ${input.typeName} in protobuf binary: ${why}`, Code.InvalidArgument);
  }
}
