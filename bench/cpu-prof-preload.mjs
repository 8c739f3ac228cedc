// Preload (`NODE_OPTIONS=--import <this file>`) writing a V8 CPU profile of the process to
// $BENCH_CPU_PROF_DIR when it exits. Node 20 refuses --cpu-prof in NODE_OPTIONS, and benchmarks
// spawn their servers through testkit with fixed exec arguments, so the inspector does it instead.
import { Session } from "node:inspector";
import { writeFileSync } from "node:fs";

const dir = process.env.BENCH_CPU_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post("Profiler.enable");
  session.post("Profiler.setSamplingInterval", { interval: 1000 });
  session.post("Profiler.start");
  process.on("exit", () => {
    // Same-thread inspector sessions answer synchronously, so this completes inside "exit".
    session.post("Profiler.stop", (err, res) => {
      if (!err) writeFileSync(`${dir}/CPU.${process.pid}.cpuprofile`, JSON.stringify(res.profile));
    });
  });
}
