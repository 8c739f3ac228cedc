// Summarize a V8 .cpuprofile: self time by function and by package.
import { readFileSync } from "node:fs";
const file = process.argv[2];
const top = Number(process.argv[3] ?? 40);
const p = JSON.parse(readFileSync(file, "utf8"));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map();
const counts = new Map();
for (const s of p.samples) counts.set(s, (counts.get(s) ?? 0) + 1);
let total = 0;
const fn = new Map(), pkg = new Map();
for (const [id, c] of counts) {
  const n = byId.get(id); total += c;
  const cf = n.callFrame;
  const url = cf.url || "";
  let k;
  const m = url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
  if (m) k = m[1]; else if (url.startsWith("node:")) k = url; else if (url.includes("/work/")) k = "app:" + url.replace(/.*\/work\/[^/]+\//, "").split("/").slice(0, 2).join("/"); else k = cf.functionName || "(native)";
  pkg.set(k, (pkg.get(k) ?? 0) + c);
  const f = `${cf.functionName || "(anon)"} ${url.replace(/.*node_modules\//, "").replace(/.*\/work\/[^/]+\//, "")}:${cf.lineNumber}`;
  fn.set(f, (fn.get(f) ?? 0) + c);
}
const pr = (m, n) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).forEach(([k, v]) => console.log(`${(100 * v / total).toFixed(1).padStart(5)}%  ${k}`));
console.log(`samples ${total}`); console.log("-- by package"); pr(pkg, 25); console.log("-- by function"); pr(fn, top);
