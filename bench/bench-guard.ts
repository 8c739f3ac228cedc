/**
 * What every benchmark does so that it cannot pass by accident: refuse to run without its load
 * generator (with the install line), print what was measured on (command, commit, machine), and
 * exit non-zero when its own correctness check failed, even after printing a good-looking table.
 */
import { spawnSync } from "node:child_process";
import os from "node:os";

/** Exit code for "a load generator or tool is missing" (distinct from a failed check, 1). */
export const EXIT_MISSING_TOOL = 2;

export function hasTool(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

/** Stops the benchmark before it measures anything when `command` is not installed. */
export function requireTool(command: string, installHint: string): void {
  if (hasTool(command)) return;
  console.error(`${command} not found: this benchmark needs it as its load generator. Install it with: ${installHint}`);
  process.exit(EXIT_MISSING_TOOL);
}

/** Commit the figures were measured on; "+dirty" when the work tree has uncommitted changes. */
export function commitOf(): string {
  const rev = spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" });
  if (rev.status !== 0) return "unknown";
  const dirty = spawnSync("git", ["status", "--porcelain", "--untracked-files=no"], { encoding: "utf8" });
  return `${rev.stdout.trim()}${dirty.stdout.trim() !== "" ? "+dirty" : ""}`;
}

/** One line to paste above recorded results. */
export function provenance(): string {
  const cmd = ["npx tsx", ...process.argv.slice(1).map((a, i) => (i === 0 ? a.replace(`${process.cwd()}/`, "") : a))].join(" ");
  return `command: ${cmd}\ncommit: ${commitOf()}; ${new Date().toISOString()}; node ${process.version}; ${os.cpus().length}x ${os.cpus()[0]?.model ?? "?"}`;
}

/** Correctness checks of one run: each failed one is printed at once and makes the exit code 1. */
export class Checks {
  private readonly failures: string[] = [];

  check(ok: boolean, what: string): boolean {
    console.log(`${ok ? "check ok" : "CHECK FAILED"}: ${what}`);
    if (!ok) this.failures.push(what);
    return ok;
  }

  get failed(): boolean {
    return this.failures.length > 0;
  }

  /** Ends the process: 1 with the failures listed, else 0. */
  exit(): never {
    if (this.failed) {
      console.error(`\n${this.failures.length} check(s) failed:\n- ${this.failures.join("\n- ")}`);
      process.exit(1);
    }
    process.exit(0);
  }
}
