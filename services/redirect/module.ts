import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { RedirectService, ResolveResponseSchema } from "../../gen/switchboard/redirect/v1/redirect_pb.js";
import { RedirectType } from "../../gen/switchboard/shortener/v1/shortener_pb.js";
import { createLinkStore } from "../links/store.js";
import type { ServiceModule } from "../module.js";
import { resolveCode } from "./resolve.js";

export const redirectModule: ServiceModule = {
  name: "redirect",
  desc: RedirectService,
  public: true,
  async create({ engine }) {
    const store = await createLinkStore(engine);
    const impl: Partial<ServiceImpl<typeof RedirectService>> = {
      async resolve(req) {
        const r = await resolveCode(store, req.code, new Date());
        const { link } = r;
        return create(ResolveResponseSchema, {
          code: link.code,
          longUrl: r.kind === "active" ? link.longUrl : "",
          redirectType: link.redirectType === 301 ? RedirectType.PERMANENT : RedirectType.TEMPORARY,
          expired: r.kind === "expired",
          ...(link.expiresAt ? { expireTime: timestampFromDate(link.expiresAt) } : {}),
        });
      },
    };
    return { impl };
  },
};
