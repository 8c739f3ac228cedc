/**
 * The contracts as the gateway serves them, for its reflection: the public services without
 * their internal-only methods, and only the message and enum types those methods use. The
 * generated descriptors describe more (PushService/SendNotification, the mesh's NATS payloads in
 * switchboard.events.v1 because redirect.proto imports it); handing them to any client would
 * document internals the edge refuses to serve.
 *
 * Types are kept by reachability from the served methods' requests and responses, a whole
 * top-level message at a time (with its nested types), so every kept file still resolves;
 * imports of files that lose all their types are dropped. WatchClicks streams
 * switchboard.events.v1.ClickEvent to link owners, so that one event type (and its enum) stays.
 * google/protobuf/* files are kept whole. Internal services' own reflection (platform/grpc) is
 * unaffected.
 */
import { clone, create, createFileRegistry, type DescEnum, type DescField, type DescFile, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";

export interface ServedService {
  readonly desc: DescService;
  /** Method names (as in the proto) the gateway does not serve. */
  readonly internalMethods: readonly string[];
}

export function servedContracts(services: readonly ServedService[]): DescService[] {
  const keptTypes = new Set<string>();
  const visitMessage = (m: DescMessage): void => {
    let top: DescMessage = m;
    while (top.parent) top = top.parent;
    if (keptTypes.has(top.typeName)) return;
    keptTypes.add(top.typeName);
    const walk = (msg: DescMessage): void => {
      for (const f of msg.fields) visitField(f);
      for (const n of msg.nestedMessages) walk(n);
    };
    walk(top);
  };
  const visitEnum = (e: DescEnum): void => {
    let top: DescEnum | DescMessage = e;
    while (top.parent) top = top.parent;
    if (top.kind === "message") visitMessage(top);
    else keptTypes.add(top.typeName);
  };
  const visitField = (f: DescField): void => {
    if (f.message) visitMessage(f.message);
    if (f.enum) visitEnum(f.enum);
  };

  const keptMethods = new Map<string, Set<string>>();
  for (const { desc, internalMethods } of services) {
    const served = desc.methods.filter((m) => !internalMethods.includes(m.name));
    keptMethods.set(desc.typeName, new Set(served.map((m) => m.name)));
    for (const m of served) {
      visitMessage(m.input);
      visitMessage(m.output);
    }
  }

  // Dependencies first: the registry resolves imports against files it already holds.
  const files = new Map<string, DescFile>();
  const seen = new Set<string>();
  const collect = (f: DescFile): void => {
    if (seen.has(f.proto.name)) return;
    seen.add(f.proto.name);
    for (const d of f.dependencies) collect(d);
    files.set(f.proto.name, f);
  };
  for (const { desc } of services) collect(desc.file);

  const pruned = new Map<string, FileDescriptorProto>();
  for (const [name, file] of files) {
    if (name.startsWith("google/protobuf/")) {
      pruned.set(name, file.proto);
      continue;
    }
    const proto = clone(FileDescriptorProtoSchema, file.proto);
    const prefix = proto.package ? `${proto.package}.` : "";
    proto.messageType = proto.messageType.filter((m) => keptTypes.has(prefix + m.name));
    proto.enumType = proto.enumType.filter((e) => keptTypes.has(prefix + e.name));
    proto.service = proto.service.filter((s) => keptMethods.has(prefix + s.name));
    for (const s of proto.service) {
      const keep = keptMethods.get(prefix + s.name)!;
      s.method = s.method.filter((m) => keep.has(m.name));
    }
    proto.extension = [];
    proto.sourceCodeInfo = undefined;
    if (proto.messageType.length + proto.enumType.length + proto.service.length === 0) continue;
    pruned.set(name, proto);
  }
  for (const proto of pruned.values()) {
    if (proto.name.startsWith("google/protobuf/")) continue;
    proto.dependency = proto.dependency.filter((d) => pruned.has(d));
    proto.publicDependency = [];
    proto.weakDependency = [];
  }
  const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: [...pruned.values()] }));
  return services.map(({ desc }) => {
    const s = registry.getService(desc.typeName);
    if (!s) throw new Error(`served contracts lost ${desc.typeName}`);
    return s;
  });
}
