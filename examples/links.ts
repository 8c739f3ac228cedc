/**
 * A partner's program on the generated TypeScript SDK (gen/, protobuf-es + Connect): creates a
 * short link, follows it, and reads its stats.
 *
 *   TOKEN=$(npx tsx cmd/switchboard.ts dev-token alice) npx tsx examples/links.ts [http://127.0.0.1:8080]
 *   API_KEY=sb_... npx tsx examples/links.ts https://links.example.com
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ShortenerService } from "../gen/switchboard/shortener/v1/shortener_pb.js";

const baseUrl = process.argv[2] ?? "http://127.0.0.1:8080";
const credentials: Record<string, string> = process.env.API_KEY
  ? { "x-api-key": process.env.API_KEY }
  : { authorization: `Bearer ${process.env.TOKEN ?? ""}` };

const shortener = createClient(
  ShortenerService,
  createConnectTransport({
    baseUrl,
    httpVersion: "1.1",
    interceptors: [
      (next) => (req) => {
        for (const [k, v] of Object.entries(credentials)) req.header.set(k, v);
        return next(req);
      },
    ],
  }),
);

try {
  const { link } = await shortener.createLink({ longUrl: "https://example.com/docs/getting-started" });
  console.log(`created ${link!.shortUrl} -> ${link!.longUrl}`);
  const hop = await fetch(`${baseUrl}/${link!.code}`, { redirect: "manual" });
  console.log(`GET /${link!.code}: ${hop.status} ${hop.headers.get("location")}`);
  // Clicks are counted off the request path: the numbers trail by about a second (as_of_time).
  let stats = await shortener.getLinkStats({ code: link!.code });
  for (let i = 0; i < 30 && stats.totalClicks === 0n; i++) {
    await new Promise((r) => setTimeout(r, 200));
    stats = await shortener.getLinkStats({ code: link!.code });
  }
  console.log(`stats: ${stats.totalClicks} clicks (${stats.humanClicks} human), as of ${stats.asOfTime ? new Date(Number(stats.asOfTime.seconds) * 1000).toISOString() : "-"}`);
} catch (e) {
  // Every error is a ConnectError with a code and a message meant for people.
  const err = ConnectError.from(e);
  console.error(`failed: ${Code[err.code]}: ${err.rawMessage}`);
  process.exitCode = 1;
}
