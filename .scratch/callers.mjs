// For samples whose leaf matches a package regex, attribute to the nearest app (/work/) frame up the stack.
import { readFileSync } from "node:fs";
const [file, pat, n = 25] = process.argv.slice(2);
const re = new RegExp(pat);
const p = JSON.parse(readFileSync(file, "utf8"));
const byId = new Map(p.nodes.map((x) => [x.id, x]));
const parent = new Map();
for (const x of p.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
const counts = new Map();
for (const s of p.samples) counts.set(s, (counts.get(s) ?? 0) + 1);
let total = 0, matched = 0; const by = new Map();
for (const [id, c] of counts) {
  total += c; const leaf = byId.get(id);
  if (!re.test(leaf.callFrame.url + " " + leaf.callFrame.functionName)) continue;
  matched += c;
  let cur = id, key = "(none)";
  while (cur !== undefined) { const f = byId.get(cur).callFrame; if (f.url.includes("/work/") && !f.url.includes("node_modules")) { key = `${f.functionName} ${f.url.replace(/.*\/work\/[^/]+\//, "")}:${f.lineNumber}`; break; } cur = parent.get(cur); }
  by.set(key, (by.get(key) ?? 0) + c);
}
console.log(`matched ${(100*matched/total).toFixed(1)}% of samples`);
[...by].sort((a,b)=>b[1]-a[1]).slice(0, Number(n)).forEach(([k,v]) => console.log(`${(100*v/total).toFixed(1).padStart(5)}%  ${k}`));
