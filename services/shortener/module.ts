import { ShortenerService } from "../../gen/switchboard/shortener/v1/shortener_pb.js";
import type { ServiceModule } from "../module.js";
import { notYetImplemented } from "../not-yet.js";

export const shortenerModule: ServiceModule = {
  name: "shortener",
  desc: ShortenerService,
  public: true,
  create: async () => notYetImplemented(ShortenerService, "links issue"),
};
