/**
 * A service whose contract is published but whose implementation has not landed yet. Every
 * method answers Unimplemented with a message that names the method, so callers (and the
 * embedded run) can tell "not built yet" from "broken".
 */
import type { DescService } from "@bufbuild/protobuf";
import { ConnectError, Code } from "@connectrpc/connect";
import type { RunningService } from "./module.js";

export function notYetImplemented(desc: DescService, note: string): RunningService {
  const impl: Record<string, unknown> = {};
  for (const m of desc.methods) {
    const error = () =>
      new ConnectError(`${desc.typeName}/${m.name} is not implemented yet (${note})`, Code.Unimplemented);
    impl[m.localName] =
      m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming"
        ? // eslint-disable-next-line require-yield
          async function* () {
            throw error();
          }
        : async () => {
            throw error();
          };
  }
  return { impl };
}
