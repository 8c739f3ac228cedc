import { PushService } from "../../gen/switchboard/push/v1/push_pb.js";
import type { ServiceModule } from "../module.js";
import { notYetImplemented } from "../not-yet.js";

export const pushModule: ServiceModule = {
  name: "push",
  desc: PushService,
  public: true,
  // A stub: answers Unimplemented without touching any backend.
  needs: [],
  internalMethods: ["SendNotification"],
  create: async () => notYetImplemented(PushService, "planned for a later release"),
};
