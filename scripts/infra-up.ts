// `npm run infra:up`: starts ZooKeeper, NATS, Redis and Cassandra on free loopback ports, prints
// the env vars that point the mesh at them, and runs until Ctrl-C (then stops them all).
import { assertNoOrphans, infraEnv, startInfra } from "../testkit/servers/index.js";

const infra = await startInfra({ log: (line) => console.error(line) });

console.log("# paste into another shell to run the mesh against these servers:");
for (const [k, v] of Object.entries(infraEnv(infra.info))) console.log(`export ${k}=${v}`);
console.error("[infra] running; press Ctrl-C to stop");

let stopping = false;
const keepAlive = setInterval(() => {}, 1 << 30);

async function shutdown(signal: string): Promise<void> {
  if (stopping) {
    console.error(`[infra] ${signal} again: exiting now (supervisors still stop the servers)`);
    process.exit(130);
  }
  stopping = true;
  console.error(`[infra] ${signal}: stopping servers…`);
  let code = 0;
  try {
    await infra.stop();
    await assertNoOrphans();
    console.error("[infra] all stopped");
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    code = 1;
  }
  clearInterval(keepAlive);
  process.exit(code);
}

process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
