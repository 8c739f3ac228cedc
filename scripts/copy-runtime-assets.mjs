// Files the compiled code reads from disk next to itself (tsc copies only .ts -> .js).
// Plain JavaScript so the build needs nothing but tsc and Node.
import { cpSync } from "node:fs";

const ASSETS = ["services/shortener/blocklist.txt"];

for (const file of ASSETS) cpSync(file, `dist/${file}`);
