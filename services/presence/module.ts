import { PresenceService } from "../../gen/switchboard/presence/v1/presence_pb.js";
import type { ServiceModule } from "../module.js";
import { notYetImplemented } from "../not-yet.js";

export const presenceModule: ServiceModule = {
  name: "presence",
  desc: PresenceService,
  public: true,
  // A stub: answers Unimplemented without touching any backend.
  needs: [],
  create: async () => notYetImplemented(PresenceService, "planned for a later release"),
};
