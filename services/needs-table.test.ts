import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { SERVICE_NAMES } from "../platform/config.js";
import { SERVICE_MODULES } from "./index.js";

/** README's "| service | needs | ..." table, as service -> sorted needs. */
function readmeNeeds(): Map<string, string[]> {
  const lines = readFileSync(new URL("../README.md", import.meta.url), "utf8").split("\n");
  const start = lines.findIndex((l) => /^\| service \| needs \|/.test(l));
  expect(start, "README has a '| service | needs |' table").toBeGreaterThanOrEqual(0);
  const out = new Map<string, string[]>();
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    const [services, needs] = line.split("|").slice(1, 3).map((c) => c.trim());
    const list = needs === "nothing" ? [] : needs!.split(",").map((n) => n.trim()).sort();
    for (const s of services!.split(",")) out.set(s.trim(), list);
  }
  return out;
}

it("README's table of what each service needs matches the modules' declarations", () => {
  const table = readmeNeeds();
  expect([...table.keys()].sort()).toEqual([...SERVICE_NAMES].sort());
  for (const name of SERVICE_NAMES) {
    expect([...(SERVICE_MODULES[name].needs ?? [])].sort(), `needs of ${name}`).toEqual(table.get(name));
  }
});
