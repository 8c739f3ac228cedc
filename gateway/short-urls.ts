/**
 * The gateway owns the public base URL (SWITCHBOARD_PUBLIC_BASE_URL): the shortener answers
 * with codes and the edge fills `short_url` into every Link it forwards.
 *
 * Why here and not a header to the shortener: the gateway is the one process whose address the
 * public sees, and it already holds each forwarded response as a decoded message, so filling a
 * field costs nothing and nothing the shortener receives has to be trusted. A shortener started
 * with another (or no) base URL cannot hand out links to the wrong host.
 */
import type { DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Link } from "../gen/switchboard/shortener/v1/shortener_pb.js";

type Handler = (input: never, ctx: never) => unknown;

/** Short URL of a code under the gateway's base URL (no trailing slash expected, tolerated). */
export function shortUrlOf(publicBaseUrl: string, code: string): string {
  return `${publicBaseUrl.replace(/\/+$/, "")}/${code}`;
}

/** Wraps CreateLink, GetLink, UpdateLink, ListLinks and BulkCreateLinks of a ShortenerService impl. */
export function fillShortUrls(impl: ServiceImpl<DescService>, publicBaseUrl: string): void {
  const fill = (l: Link | undefined): void => {
    if (l && l.code) l.shortUrl = shortUrlOf(publicBaseUrl, l.code);
  };
  const methods = impl as unknown as Record<string, Handler>;
  const wrap = (name: string, onResponse: (res: never) => void): void => {
    const inner = methods[name];
    if (!inner) return;
    methods[name] = async (input: never, ctx: never) => {
      const res = (await inner(input, ctx)) as never;
      onResponse(res);
      return res;
    };
  };
  wrap("createLink", (r: { link?: Link }) => fill(r.link));
  wrap("getLink", (r: { link?: Link }) => fill(r.link));
  wrap("updateLink", (r: { link?: Link }) => fill(r.link));
  wrap("listLinks", (r: { links: Link[] }) => r.links.forEach(fill));
  wrap("bulkCreateLinks", (r: { results: { result: { case: string | undefined; value?: unknown } }[] }) => {
    for (const item of r.results) if (item.result.case === "link") fill(item.result.value as Link);
  });
}
