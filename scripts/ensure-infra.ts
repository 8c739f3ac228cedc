// Run by `npm test` before vitest: makes sure the integration servers are installed.
// Fast path (everything present): a few file checks, no apt, no network. Otherwise runs
// scripts/install-infra.sh, which prints what it installs.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { missingInfra } from "../testkit/servers/paths.js";

const missing = missingInfra();
if (missing.length > 0) {
  console.error(`[ensure-infra] missing: ${missing.join(", ")}; running scripts/install-infra.sh`);
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), "install-infra.sh");
  const r = spawnSync("bash", [script], { stdio: "inherit" });
  if (r.status !== 0) {
    console.error(`[ensure-infra] install-infra.sh failed (${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
  const still = missingInfra();
  if (still.length > 0) {
    console.error(`[ensure-infra] still missing after install: ${still.join(", ")}`);
    process.exit(1);
  }
}
