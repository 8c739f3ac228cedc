/**
 * switchboard [all | gateway | <service> | probe [host]]
 *   all       every service and the gateway in one process (default; memory engine by default)
 *   gateway   the public edge alone (cluster deployments)
 *   <service> tokenrange, shortener, redirect, chat, presence or push alone
 *   probe     exit 0 when the gRPC server at host:SWITCHBOARD_GRPC_PORT reports SERVING
 *   dev-token <user>            print a JWT for <user> (see cmd/dev-token.ts)
 *   apikey create|revoke|list   manage partner API keys (cluster engine)
 */
import { relative } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Health, HealthCheckRequestSchema, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { ConfigError, loadConfig, SERVICE_NAMES, type Config, type ServiceName } from "../platform/config.js";
import { createGrpcClient } from "../platform/grpc/client.js";
import { createLogger } from "../platform/logging.js";
import { meshKeyOf } from "../platform/mesh-secret.js";
import { startMetricsServer, type MetricsServer } from "../platform/metrics-server.js";
import { onShutdownSignals } from "../platform/shutdown.js";
import { readGatewayAuthSettings } from "../gateway/auth/config.js";
import { apiKeyCommand, devTokenCommand, UsageError, type CommandIo } from "./dev-token.js";
import { runEmbedded, runGateway, runService, type Running } from "./mesh.js";

const USAGE =
  `usage: switchboard [all | gateway | ${SERVICE_NAMES.join(" | ")} | probe [host]` +
  ` | dev-token <user> | apikey create --owner <user> | apikey revoke <id>]`;

async function main(argv: readonly string[]): Promise<void> {
  const role = argv[0] ?? "all";
  let config: Config;
  try {
    config = loadConfig();
    if (role === "all" || role === "gateway") readGatewayAuthSettings(process.env, config.engine);
    // Every serving role signs or verifies mesh identity: a missing secret stops it here, in one line.
    if (role === "all" || role === "gateway" || (SERVICE_NAMES as readonly string[]).includes(role)) meshKeyOf(config);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`switchboard: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  if (role === "probe") return probe(config, argv[1] ?? "127.0.0.1");
  if (role === "dev-token" || role === "apikey") return credentialCommand(role, argv.slice(1), config);
  if (role === "help" || role === "--help" || role === "-h") {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const log = createLogger({ level: config.logLevel, name: role === "all" ? "switchboard" : role });
  let running: Running;
  let metricsServer: MetricsServer | undefined;
  if (role === "all") {
    running = await runEmbedded(config, log);
    metricsServer = await serveMetrics(config, running);
    printBanner(config, running, metricsServer);
  } else if (role === "gateway") {
    running = await runGateway(config, log);
    metricsServer = await serveMetrics(config, running);
    log.info({ port: running.gatewayPort, metricsPort: metricsServer?.port }, "gateway listening");
  } else if ((SERVICE_NAMES as readonly string[]).includes(role)) {
    running = await runService(role as ServiceName, config, log);
    // A service alone serves /metrics only when asked to (several roles on one host would all
    // want the default port): e.g. each chat server's chat_routed_events_total, chat_live_streams.
    if (process.env.SWITCHBOARD_METRICS_PORT !== undefined) {
      metricsServer = await serveMetrics(config, running);
      log.info({ metricsPort: metricsServer?.port }, "metrics listening");
    }
  } else {
    process.stderr.write(`switchboard: unknown role "${role}"\n${USAGE}\n`);
    process.exit(2);
  }
  onShutdownSignals(
    async () => {
      await metricsServer?.close();
      await running.close();
    },
    { log },
  );
}

/** The metrics listener (SWITCHBOARD_METRICS_*); a port already taken stops the start like any bad setting. */
async function serveMetrics(config: Config, running: Running): Promise<MetricsServer | undefined> {
  if (!config.metrics.listen || !running.metrics) return undefined;
  try {
    return await startMetricsServer(running.metrics, config.metrics.host, config.metrics.port);
  } catch (e) {
    await running.close();
    const why = e instanceof Error ? e.message : String(e);
    throw new ConfigError("SWITCHBOARD_METRICS_PORT", `cannot be listened on at ${config.metrics.host}:${config.metrics.port} (${why}); set another port, 0 for any free one, or off`);
  }
}

function printBanner(config: Config, running: Running, metrics: MetricsServer | undefined): void {
  const host = config.gateway.host === "0.0.0.0" ? "127.0.0.1" : config.gateway.host;
  const tls = config.gateway.tls !== undefined;
  const url = `${tls ? "https" : "http"}://${host}:${running.gatewayPort}`;
  const metricsHost = config.metrics.host === "0.0.0.0" ? "127.0.0.1" : config.metrics.host;
  const metricsUrl = metrics
    ? `http://${metricsHost.includes(":") ? `[${metricsHost}]` : metricsHost}:${metrics.port}/metrics`
    : "off";
  const lines = [
    "",
    `Switchboard is running on the ${config.engine} engine`,
    tls
      ? `  gateway   ${url}   (TLS: Connect, gRPC-web and gRPC over HTTP/2 or HTTP/1.1 by ALPN, one port)`
      : `  gateway   ${url}   (Connect + gRPC-web over HTTP/1.1, gRPC over h2c, one port)`,
    `  health    ${url}/healthz   ${url}/readyz`,
    `  metrics   ${metricsUrl}${config.metrics.onPublicPort ? `   and ${url}/metrics` : ""}`,
    `  services  ${Object.entries(running.grpcPorts).map(([n, p]) => `${n}=127.0.0.1:${p}`).join("  ")}  (internal gRPC)`,
    "",
    `  auth      TOKEN=$(${selfCommand()} dev-token alice)   then -H "authorization: Bearer $TOKEN" (README "Auth")`,
    "",
    "  Try:",
    tls
      ? `    npx buf curl --protocol grpc ${url} --list-services   (add --insecure for a self-signed certificate)`
      : `    npx buf curl --protocol grpc --http2-prior-knowledge ${url} --list-services`,
    `    curl -s -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"long_url":"https://example.com"}' ${url}/api/v1/shorten`,
    `    curl -si ${url}/<code>`,
    "",
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

/** How to run this same entry point again: the compiled build has no tsx to offer. */
function selfCommand(): string {
  const script = process.argv[1] ?? "";
  if (!script.endsWith(".js")) return "npx tsx cmd/switchboard.ts";
  const rel = relative(process.cwd(), script);
  return `node ${rel && !rel.startsWith("..") ? rel : script}`;
}

async function credentialCommand(role: "dev-token" | "apikey", args: readonly string[], config: Config): Promise<void> {
  const io: CommandIo = {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
  };
  try {
    if (role === "dev-token") devTokenCommand(args, config, process.env, io);
    else await apiKeyCommand(args, config, io);
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError) {
      process.stderr.write(`${e instanceof ConfigError ? `switchboard: ${e.message}` : e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
}

async function probe(config: Config, host: string): Promise<void> {
  const port = config.grpc.port;
  if (port === 0) {
    process.stderr.write("switchboard probe: set SWITCHBOARD_GRPC_PORT to the port to probe\n");
    process.exit(2);
  }
  const client = createGrpcClient(Health, `${host}:${port}`, { defaultTimeoutMs: 3_000 });
  try {
    const res = await client.check(create(HealthCheckRequestSchema, {}));
    const status = HealthCheckResponse_ServingStatus[res.status];
    process.stdout.write(`${host}:${port} ${status}\n`);
    process.exit(res.status === HealthCheckResponse_ServingStatus.SERVING ? 0 : 1);
  } catch (e) {
    process.stdout.write(`${host}:${port} unreachable: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof ConfigError) {
    process.stderr.write(`switchboard: ${e.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`switchboard: failed to start: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
