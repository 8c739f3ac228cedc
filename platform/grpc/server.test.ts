import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createLogger } from "../logging.js";
import { createMetrics } from "../metrics.js";
import { DomainError, notFound } from "../errors.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection, type ServerReflectionResponse } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ShortenerService,
  type BulkCreateLinksRequest,
  type GetLinkRequest,
} from "../../gen/switchboard/shortener/v1/shortener_pb.js";
import { createGrpcClient } from "./client.js";
import { callLogKey, requestIdKey } from "./context.js";
import { IN_PROCESS_PEER } from "./in-process.js";
import { grpcService, startGrpcServer, type RunningGrpcServer } from "./server.js";

const run = promisify(execFile);

/** Captures log lines so tests can assert what was (not) logged. */
function captureLog() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, log: createLogger({ name: "test", level: "debug", destination }) };
}

const observed = { aborted: false, reason: undefined as unknown, requestId: "", hadLogger: false, peer: "" };

/** Records the peer each call arrives from (the in-process hop names itself). */
const peerRecorder = () => (init: { readonly peer: string }) => {
  observed.peer = init.peer;
  return createContextValues();
};

/** Both ways a client of this process reaches a server of it: over the network, and the in-process hop. */
const MODES = [
  { mode: "network", inProcess: false },
  { mode: "in-process hop", inProcess: true },
] as const;
let releaseSlow: (() => void) | undefined;
let keptCtx: HandlerContext | undefined;

const shortener = {
  async getLink(req: GetLinkRequest, ctx: HandlerContext) {
    observed.requestId = ctx.values.get(requestIdKey);
    observed.hadLogger = ctx.values.get(callLogKey) !== undefined;
    switch (req.code) {
      case "missing":
        throw notFound("link missing");
      case "boom":
        throw new Error("db password is hunter2");
      case "limited":
        throw new DomainError("ResourceExhausted", "slow down", { retryAfterMs: 1500 });
      case "connect":
        throw new ConnectError("bad code", Code.InvalidArgument);
      case "hang":
        await new Promise<void>((resolve) => {
          ctx.signal.addEventListener("abort", () => {
            observed.aborted = true;
            observed.reason = ctx.signal.reason;
            resolve();
          });
        });
        throw ctx.signal.reason;
      case "keep":
        keptCtx = ctx; // ctx.signal is first read after the call completed
        return { link: { code: "keep" } };
      case "slow":
        await new Promise<void>((resolve) => (releaseSlow = resolve));
        return { link: { code: "slow", shortUrl: "http://s/slow" } };
    }
    ctx.responseHeader.set("x-served-by", "test");
    return { link: { code: req.code, shortUrl: `http://s/${req.code}`, longUrl: ctx.requestHeader.get("x-long") ?? "" } };
  },
  async bulkCreateLinks(requests: AsyncIterable<BulkCreateLinksRequest>) {
    let n = 0;
    const ids: string[] = [];
    for await (const r of requests) {
      n++;
      ids.push(r.itemId);
    }
    return { succeeded: n, results: ids.map((itemId) => ({ itemId })) };
  },
};

describe.each(MODES)("grpc server + client through the protobuf-es adapter ($mode)", ({ inProcess }) => {
  let srv: RunningGrpcServer;
  let target: string;
  const { lines, log } = captureLog();
  const metrics = createMetrics({ defaultMetrics: false });

  beforeAll(async () => {
    srv = await startGrpcServer({ services: [grpcService(ShortenerService, shortener)], port: 0, log, metrics, inProcess, contextValues: peerRecorder() });
    target = `127.0.0.1:${srv.port}`;
  });
  afterAll(async () => {
    await srv.shutdown(1000);
  });

  it("unary: request headers in, response message out, request id propagated", async () => {
    const client = createGrpcClient(ShortenerService, target);
    let header: Headers | undefined;
    const res = await client.getLink(
      { code: "abc" },
      { headers: { "x-long": "https://example.com", "x-request-id": "req-42" }, onHeader: (h) => (header = h) },
    );
    expect(res.link?.shortUrl).toBe("http://s/abc");
    expect(res.link?.longUrl).toBe("https://example.com");
    expect(header?.get("x-served-by")).toBe("test");
    expect(observed.requestId).toBe("req-42");
    expect(observed.hadLogger).toBe(true);
    expect(observed.peer === IN_PROCESS_PEER).toBe(inProcess);
    client.close();
  });

  it("a caller naming the server by localhost takes the same way", async () => {
    const client = createGrpcClient(ShortenerService, `localhost:${srv.port}`);
    observed.peer = "";
    expect((await client.getLink({ code: "viaLocalhost" })).link?.code).toBe("viaLocalhost");
    expect(observed.peer === IN_PROCESS_PEER).toBe(inProcess);
    client.close();
  });

  it("client streaming: the handler reads every request as an AsyncIterable", async () => {
    const client = createGrpcClient(ShortenerService, target);
    async function* items() {
      for (let i = 0; i < 50; i++) yield { itemId: `i${i}`, longUrl: "https://example.com" };
    }
    const res = await client.bulkCreateLinks(items());
    expect(res.succeeded).toBe(50);
    expect(res.results.map((r) => r.itemId)).toEqual(Array.from({ length: 50 }, (_, i) => `i${i}`));
    client.close();
  });

  it("maps DomainError NotFound to NOT_FOUND with its message", async () => {
    const client = createGrpcClient(ShortenerService, target);
    const err = await client.getLink({ code: "missing" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
    expect((err as ConnectError).rawMessage).toBe("link missing not found");
    client.close();
  });

  it("passes ConnectError code and message through, and carries the retry-after hint", async () => {
    const client = createGrpcClient(ShortenerService, target);
    const e1 = (await client.getLink({ code: "connect" }).catch((e: unknown) => e)) as ConnectError;
    expect([e1.code, e1.rawMessage]).toEqual([Code.InvalidArgument, "bad code"]);
    const e2 = (await client.getLink({ code: "limited" }).catch((e: unknown) => e)) as ConnectError;
    expect(e2.code).toBe(Code.ResourceExhausted);
    expect(e2.metadata.get("retry-after-ms")).toBe("1500");
    expect(e2.metadata.get("retry-after")).toBe("2");
    client.close();
  });

  it("maps a plain Error to INTERNAL without leaking its message, and logs the stack", async () => {
    const client = createGrpcClient(ShortenerService, target);
    const err = (await client.getLink({ code: "boom" }, { headers: { "x-request-id": "req-boom" } }).catch((e: unknown) => e)) as ConnectError;
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("internal error (request id req-boom)");
    expect(err.message).not.toContain("hunter2");
    const logged = lines.find((l) => l["requestId"] === "req-boom" && l["level"] === "error");
    expect(logged).toBeDefined();
    expect(JSON.stringify(logged)).toContain("at "); // the stack
    client.close();
  });

  it("answers UNIMPLEMENTED naming a method the impl lacks", async () => {
    const client = createGrpcClient(ShortenerService, target);
    const err = (await client.createLink({ longUrl: "https://x" }).catch((e: unknown) => e)) as ConnectError;
    expect(err.code).toBe(Code.Unimplemented);
    expect(err.rawMessage).toBe("switchboard.shortener.v1.ShortenerService.CreateLink is not implemented");
    client.close();
  });

  it("client abort cancels the call and aborts the handler's signal", async () => {
    const client = createGrpcClient(ShortenerService, target);
    observed.aborted = false;
    const ac = new AbortController();
    const p = client.getLink({ code: "hang" }, { signal: ac.signal }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 100));
    ac.abort();
    const err = (await p) as ConnectError;
    expect(err.code).toBe(Code.Canceled);
    await expect.poll(() => observed.aborted).toBe(true);
    expect((observed.reason as ConnectError).code).toBe(Code.Canceled);
    client.close();
  });

  it("a deadline reaches the handler as ctx.signal and the caller sees DEADLINE_EXCEEDED", async () => {
    const client = createGrpcClient(ShortenerService, target);
    observed.aborted = false;
    const err = (await client.getLink({ code: "hang" }, { timeoutMs: 150 }).catch((e: unknown) => e)) as ConnectError;
    expect(err.code).toBe(Code.DeadlineExceeded);
    await expect.poll(() => observed.aborted).toBe(true);
    client.close();
  });

  it("health: Check answers SERVING / NOT_FOUND; Watch streams changes and SERVICE_UNKNOWN", async () => {
    const client = createGrpcClient(Health, target);
    expect((await client.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    expect((await client.check({ service: "switchboard.shortener.v1.ShortenerService" })).status).toBe(ServingStatus.SERVING);
    const err = (await client.check({ service: "nope" }).catch((e: unknown) => e)) as ConnectError;
    expect(err.code).toBe(Code.NotFound);

    const ac = new AbortController();
    const seen: ServingStatus[] = [];
    const it = client.watch({ service: "later" }, { signal: ac.signal })[Symbol.asyncIterator]();
    seen.push((await it.next()).value.status);
    srv.health.setStatus("later", ServingStatus.NOT_SERVING);
    seen.push((await it.next()).value.status);
    srv.health.setStatus("later", ServingStatus.SERVING);
    seen.push((await it.next()).value.status);
    await it.return?.();
    expect(seen).toEqual([ServingStatus.SERVICE_UNKNOWN, ServingStatus.NOT_SERVING, ServingStatus.SERVING]);
    client.close();
  });

  it("many concurrent calls on one server raise no MaxListenersExceededWarning (every call listens to the server's stop signal)", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    const client = createGrpcClient(Health, target);
    const acs = Array.from({ length: 25 }, () => new AbortController());
    const its = acs.map((ac) => client.watch({ service: "many" }, { signal: ac.signal })[Symbol.asyncIterator]());
    for (const it of its) expect((await it.next()).value.status).toBe(ServingStatus.SERVICE_UNKNOWN);
    await new Promise((r) => setTimeout(r, 50));
    for (const ac of acs) ac.abort();
    for (const it of its) await it.return?.().catch(() => {});
    process.off("warning", onWarning);
    client.close();
    expect(warnings.filter((w) => w.name === "MaxListenersExceededWarning").map((w) => w.message)).toEqual([]);
  });

  it("reflection v1 over bidi: list, symbols, nested names, each file once per stream, NOT_FOUND", async () => {
    const client = createGrpcClient(ServerReflection, target);
    async function* requests() {
      yield { messageRequest: { case: "listServices" as const, value: "" } };
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "switchboard.shortener.v1.ShortenerService.GetLink" } };
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "switchboard.shortener.v1.Link" } };
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "grpc.health.v1.HealthCheckResponse.ServingStatus" } };
      yield { messageRequest: { case: "fileByFilename" as const, value: "google/protobuf/timestamp.proto" } };
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "no.Such" } };
    }
    const answers: ServerReflectionResponse["messageResponse"][] = [];
    for await (const a of client.serverReflectionInfo(requests())) answers.push(a.messageResponse);
    expect(answers).toHaveLength(6);
    const [list, svc, msg, nested, ts, missing] = answers;
    expect(list?.case === "listServicesResponse" && list.value.service.map((s) => s.name)).toEqual([
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "switchboard.shortener.v1.ShortenerService",
    ]);
    const names = (a: (typeof answers)[number] | undefined) =>
      a?.case === "fileDescriptorResponse" ? a.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name) : [];
    expect(names(svc)[0]).toBe("switchboard/shortener/v1/shortener.proto");
    expect(names(svc)).toContain("google/protobuf/timestamp.proto");
    expect(names(msg)).toEqual(["switchboard/shortener/v1/shortener.proto"]); // deps already sent
    expect(names(nested)).toEqual(["grpc/health/v1/health.proto"]);
    expect(names(ts)).toEqual(["google/protobuf/timestamp.proto"]); // the requested file is always sent
    expect(missing?.case === "errorResponse" && missing.value.errorCode).toBe(Code.NotFound);
    client.close();
  });

  it("a ctx.signal first read after the call completed is already aborted", async () => {
    const client = createGrpcClient(ShortenerService, target);
    keptCtx = undefined;
    expect((await client.getLink({ code: "keep" })).link?.code).toBe("keep");
    expect(keptCtx!.signal.aborted).toBe(true);
    expect((keptCtx!.signal.reason as ConnectError).code).toBe(Code.Canceled);
    expect(keptCtx!.timeoutMs()).toBeUndefined();
    client.close();
  });

  it("metrics count calls by method and code", async () => {
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/grpc_server_handled_total\{grpc_service="switchboard.shortener.v1.ShortenerService",grpc_method="CreateLink",grpc_type="unary",grpc_code="UNIMPLEMENTED"\} 1/);
    expect(text).toMatch(/grpc_server_handled_total\{grpc_service="switchboard.shortener.v1.ShortenerService",grpc_method="BulkCreateLinks",grpc_type="client_stream",grpc_code="OK"\} 1/);
    expect(text).toMatch(/grpc_server_started_total\{grpc_service="switchboard.shortener.v1.ShortenerService",grpc_method="CreateLink",grpc_type="unary"\} 1/);
    expect(text).toMatch(/grpc_server_handled_total\{grpc_service="switchboard.shortener.v1.ShortenerService",grpc_method="GetLink",grpc_type="unary",grpc_code="NOT_FOUND"\} 1/);
    expect(text).toContain("grpc_server_handling_seconds_bucket");
  });

  describe("buf curl through server reflection", () => {
    const buf = ["node_modules/.bin/buf", "curl", "--protocol", "grpc", "--http2-prior-knowledge"];
    for (const protocol of ["grpc-v1", "grpc-v1alpha"]) {
      it(`${protocol}: --list-services, --list-methods and a call`, async () => {
        const base = `http://${target}`;
        const flags = ["--reflect-protocol", protocol];
        const services = await run(buf[0]!, [...buf.slice(1), ...flags, base, "--list-services"]);
        expect(services.stdout.split("\n")).toContain("switchboard.shortener.v1.ShortenerService");
        expect(services.stdout.split("\n")).toContain("grpc.health.v1.Health");
        const methods = await run(buf[0]!, [...buf.slice(1), ...flags, base, "--list-methods"]);
        expect(methods.stdout).toContain("switchboard.shortener.v1.ShortenerService/GetLink");
        expect(methods.stdout).toContain("switchboard.shortener.v1.ShortenerService/BulkCreateLinks");
        expect(methods.stdout).toContain("grpc.health.v1.Health/Watch");
        const call = await run(buf[0]!, [...buf.slice(1), ...flags, "-d", '{"code":"viaBuf"}', `${base}/switchboard.shortener.v1.ShortenerService/GetLink`]);
        expect(JSON.parse(call.stdout)).toMatchObject({ link: { code: "viaBuf", shortUrl: "http://s/viaBuf" } });
        const health = await run(buf[0]!, [...buf.slice(1), ...flags, "-d", "{}", `${base}/grpc.health.v1.Health/Check`]);
        expect(JSON.parse(health.stdout)).toEqual({ status: "SERVING" });
      }, 30_000);
    }
  });
});

describe.each(MODES)("graceful shutdown ($mode)", ({ inProcess }) => {
  it("drains an in-flight call, answers NOT_SERVING meanwhile, then runs closers in reverse", async () => {
    const { log } = captureLog();
    const srv = await startGrpcServer({ services: [grpcService(ShortenerService, shortener)], port: 0, log, inProcess });
    const target = `127.0.0.1:${srv.port}`;
    const order: string[] = [];
    srv.onClose("db", () => void order.push("db"));
    srv.onClose("cache", () => void order.push("cache"));
    const client = createGrpcClient(ShortenerService, target);
    releaseSlow = undefined;
    const inFlight = client.getLink({ code: "slow" });
    await expect.poll(() => releaseSlow).toBeDefined();
    const stopped = srv.shutdown(5_000);
    expect(srv.health.getStatus("")).toBe(ServingStatus.NOT_SERVING);
    await new Promise((r) => setTimeout(r, 100));
    expect(order).toEqual([]); // still draining
    releaseSlow!();
    expect((await inFlight).link?.code).toBe("slow");
    await stopped;
    expect(order).toEqual(["cache", "db"]);
    client.close();
  });

  it("forces remaining calls after graceMs (handler signal aborted)", async () => {
    const { log } = captureLog();
    const srv = await startGrpcServer({ services: [grpcService(ShortenerService, shortener)], port: 0, log, inProcess });
    const client = createGrpcClient(ShortenerService, `127.0.0.1:${srv.port}`);
    observed.aborted = false;
    const p = client.getLink({ code: "hang" }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await srv.shutdown(200);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(((await p) as ConnectError).code).toBeOneOf([Code.Canceled, Code.Unavailable]);
    await expect.poll(() => observed.aborted).toBe(true);
    client.close();
  });
});
