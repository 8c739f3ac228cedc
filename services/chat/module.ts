import { ChatService } from "../../gen/switchboard/chat/v1/chat_pb.js";
import type { ServiceModule } from "../module.js";
import { notYetImplemented } from "../not-yet.js";

export const chatModule: ServiceModule = {
  name: "chat",
  desc: ChatService,
  public: true,
  create: async () => notYetImplemented(ChatService, "planned for a later release"),
};
