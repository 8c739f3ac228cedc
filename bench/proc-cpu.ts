/** CPU time of processes and of the machine from /proc (Linux), for the benchmarks' CPU splits. */
import { readFileSync } from "node:fs";

/** Clock ticks per second of /proc's CPU counters (USER_HZ, 100 on Linux). */
export const TICKS_PER_SECOND = 100;

/** Fields of /proc/<pid>/stat after the command name (which may contain spaces). */
function statFields(pid: number): string[] {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  return s.slice(s.lastIndexOf(")") + 2).split(" ");
}

/** utime + stime of a process in clock ticks; 0 when it is gone. */
export function cpuTicks(pid: number): number {
  try {
    const f = statFields(pid);
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/** cutime + cstime: CPU ticks of a process's children that have exited and been reaped. */
export function childrenTicks(pid: number): number {
  const f = statFields(pid);
  return Number(f[13]) + Number(f[14]);
}

/** Busy and total ticks of the whole machine (first line of /proc/stat). */
export function machineTicks(): { busy: number; total: number } {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = cpu.reduce((a, b) => a + b, 0);
  return { busy: total - cpu[3]! - (cpu[4] ?? 0), total };
}
