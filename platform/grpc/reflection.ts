/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) as transport-neutral ServiceImpls,
 * built from protobuf-es descriptors. Mount both on grpc-js (startGrpcServer does) or on
 * connect-node (`router.service(ServerReflection, impl)`).
 *
 * Answers list_services (the given services + reflection + health), file_by_filename,
 * file_containing_symbol (package-qualified services, methods `pkg.Svc.Method`, messages,
 * enums, enum values, fields, extensions, nested names), file_containing_extension and
 * all_extension_numbers_of_type. File answers carry the file plus its transitive dependencies
 * (google/protobuf/* included); within one stream each file is sent once (the requested file
 * itself is always included, so an answer is never empty). Unknown names -> error_response
 * NOT_FOUND; the stream stays open.
 */
import { toBinary, type DescEnum, type DescFile, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import {
  ServerReflection as ServerReflectionV1,
  type ServerReflectionRequest as RequestV1,
  type ServerReflectionResponseSchema as ResponseV1Schema,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionV1Alpha,
  type ServerReflectionRequest as RequestV1Alpha,
  type ServerReflectionResponseSchema as ResponseV1AlphaSchema,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";

export { ServerReflectionV1, ServerReflectionV1Alpha };

/** The `message_response` oneof, shaped identically in v1 and v1alpha. */
export type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

type RequestCase = RequestV1["messageRequest"];

/** Per-stream state: which files this stream has already received. */
export interface ReflectionSession {
  answer(request: RequestCase): ReflectionAnswer;
}

export interface Reflection {
  /** Fully-qualified names listed by list_services. */
  readonly serviceNames: readonly string[];
  /** A fresh per-stream session. */
  session(): ReflectionSession;
  readonly v1: ServiceImpl<typeof ServerReflectionV1>;
  readonly v1alpha: ServiceImpl<typeof ServerReflectionV1Alpha>;
}

/**
 * Reflection over `services` (their files and all transitive dependencies) plus Health and
 * both reflection versions. `extraFiles` adds files not reachable from a service (e.g. event
 * payload protos).
 */
export function createReflection(services: readonly DescService[], extraFiles: readonly DescFile[] = []): Reflection {
  const all = dedupe([...services, Health, ServerReflectionV1, ServerReflectionV1Alpha]);
  const files = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const extensionsByType = new Map<string, Map<number, DescFile>>();

  const addFile = (file: DescFile): void => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    for (const dep of file.dependencies) addFile(dep);
    for (const m of file.messages) addMessage(m);
    for (const e of file.enums) addEnum(e);
    for (const ext of file.extensions) addExtension(ext.typeName, ext.extendee.typeName, ext.number, file);
    for (const s of file.services) {
      symbols.set(s.typeName, file);
      for (const m of s.methods) symbols.set(`${s.typeName}.${m.name}`, file);
    }
  };
  const addMessage = (m: DescMessage): void => {
    symbols.set(m.typeName, m.file);
    for (const f of m.fields) symbols.set(`${m.typeName}.${f.name}`, m.file);
    for (const o of m.oneofs) symbols.set(`${m.typeName}.${o.name}`, m.file);
    for (const n of m.nestedMessages) addMessage(n);
    for (const e of m.nestedEnums) addEnum(e);
    for (const ext of m.nestedExtensions) addExtension(ext.typeName, ext.extendee.typeName, ext.number, m.file);
  };
  const addEnum = (e: DescEnum): void => {
    symbols.set(e.typeName, e.file);
    // Enum values are scoped like siblings of the enum (protobuf C++ scoping rules).
    const scope = e.typeName.slice(0, Math.max(0, e.typeName.lastIndexOf(".")));
    for (const v of e.values) symbols.set(scope ? `${scope}.${v.name}` : v.name, e.file);
  };
  const addExtension = (typeName: string, extendee: string, number: number, file: DescFile): void => {
    symbols.set(typeName, file);
    let byNumber = extensionsByType.get(extendee);
    if (!byNumber) extensionsByType.set(extendee, (byNumber = new Map()));
    byNumber.set(number, file);
  };

  for (const s of all) addFile(s.file);
  for (const f of extraFiles) addFile(f);

  const encoded = new Map<string, Uint8Array>();
  const bytesOf = (file: DescFile): Uint8Array => {
    let b = encoded.get(file.proto.name);
    if (!b) encoded.set(file.proto.name, (b = toBinary(FileDescriptorProtoSchema, file.proto)));
    return b;
  };
  const serviceNames = all.map((s) => s.typeName).sort();

  const session = (): ReflectionSession => {
    const sent = new Set<string>();
    const withDeps = (file: DescFile): ReflectionAnswer => {
      const out: Uint8Array[] = [];
      const queue: DescFile[] = [file];
      const seen = new Set<string>();
      while (queue.length > 0) {
        const f = queue.shift()!;
        if (seen.has(f.proto.name)) continue;
        seen.add(f.proto.name);
        if (f === file || !sent.has(f.proto.name)) {
          sent.add(f.proto.name);
          out.push(bytesOf(f));
        }
        queue.push(...f.dependencies);
      }
      return { case: "fileDescriptorResponse", value: { fileDescriptorProto: out } };
    };
    const notFound = (what: string): ReflectionAnswer => ({
      case: "errorResponse",
      value: { errorCode: Code.NotFound, errorMessage: `${what} not found` },
    });
    return {
      answer(request) {
        switch (request.case) {
          case "listServices":
            return { case: "listServicesResponse", value: { service: serviceNames.map((name) => ({ name })) } };
          case "fileByFilename": {
            const f = files.get(request.value);
            return f ? withDeps(f) : notFound(`file "${request.value}"`);
          }
          case "fileContainingSymbol": {
            const name = request.value.replace(/^\./, "");
            const f = symbols.get(name);
            return f ? withDeps(f) : notFound(`symbol "${name}"`);
          }
          case "fileContainingExtension": {
            const { containingType, extensionNumber } = request.value;
            const f = extensionsByType.get(containingType.replace(/^\./, ""))?.get(extensionNumber);
            return f ? withDeps(f) : notFound(`extension ${extensionNumber} of "${containingType}"`);
          }
          case "allExtensionNumbersOfType": {
            const name = request.value.replace(/^\./, "");
            if (!symbols.has(name)) return notFound(`type "${name}"`);
            const numbers = [...(extensionsByType.get(name)?.keys() ?? [])].sort((a, b) => a - b);
            return { case: "allExtensionNumbersResponse", value: { baseTypeName: name, extensionNumber: numbers } };
          }
          default:
            return {
              case: "errorResponse",
              value: { errorCode: Code.InvalidArgument, errorMessage: "empty or unknown reflection request" },
            };
        }
      },
    };
  };

  const v1: ServiceImpl<typeof ServerReflectionV1> = {
    async *serverReflectionInfo(requests: AsyncIterable<RequestV1>): AsyncGenerator<MessageInitShape<typeof ResponseV1Schema>> {
      const s = session();
      for await (const req of requests) {
        yield { validHost: req.host, originalRequest: req, messageResponse: s.answer(req.messageRequest) };
      }
    },
  };
  const v1alpha: ServiceImpl<typeof ServerReflectionV1Alpha> = {
    async *serverReflectionInfo(
      requests: AsyncIterable<RequestV1Alpha>,
    ): AsyncGenerator<MessageInitShape<typeof ResponseV1AlphaSchema>> {
      const s = session();
      for await (const req of requests) {
        yield {
          validHost: req.host,
          originalRequest: req,
          messageResponse: s.answer(req.messageRequest as RequestCase),
        };
      }
    },
  };
  return { serviceNames, session, v1, v1alpha };
}

function dedupe(services: DescService[]): DescService[] {
  const seen = new Set<string>();
  return services.filter((s) => !seen.has(s.typeName) && (seen.add(s.typeName), true));
}
