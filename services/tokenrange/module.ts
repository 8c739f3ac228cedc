import { TokenRangeService } from "../../gen/switchboard/tokenrange/v1/tokenrange_pb.js";
import type { ServiceModule } from "../module.js";
import { notYetImplemented } from "../not-yet.js";

export const tokenrangeModule: ServiceModule = {
  name: "tokenrange",
  desc: TokenRangeService,
  public: false,
  create: async () => notYetImplemented(TokenRangeService, "token-range issue"),
};
