import type { ServiceName } from "../platform/config.js";
import { chatModule } from "./chat/module.js";
import type { ServiceModule } from "./module.js";
import { presenceModule } from "./presence/module.js";
import { pushModule } from "./push/module.js";
import { redirectModule } from "./redirect/module.js";
import { shortenerModule } from "./shortener/module.js";
import { tokenrangeModule } from "./tokenrange/module.js";

export const SERVICE_MODULES: Readonly<Record<ServiceName, ServiceModule>> = {
  tokenrange: tokenrangeModule,
  shortener: shortenerModule,
  redirect: redirectModule,
  // Before chat: a chat server reports its streams' devices to presence and asks presence and
  // push about offline members (upstreamAddress).
  presence: presenceModule,
  push: pushModule,
  chat: chatModule,
};
