/**
 * README's configuration table ("| variable | default |" under "Running on the cluster engine")
 * must name every SWITCHBOARD_* variable the code reads. Two views of "reads":
 * - every string literal in the production sources (cmd, platform, services, gateway; tests,
 *   suites and test helpers left out) that is exactly a variable name, or a template that
 *   starts one (`SWITCHBOARD_UPSTREAM_${service}`: a family, documented as `..._<SERVICE>`);
 * - every name the configuration readers ask an environment for, recorded while they run.
 * A row may shorten later names of its first cell to their suffix after the area:
 * "`SWITCHBOARD_CASSANDRA_LOCAL_DC` / `_KEYSPACE`" documents SWITCHBOARD_CASSANDRA_KEYSPACE.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { readGatewayAuthSettings } from "../gateway/auth/config.js";
import { readBlocklist, readOwnHosts } from "../services/shortener/env.js";
import { loadCodeKey } from "../services/tokenrange/code-key.js";
import { loadConfig } from "./config.js";

const ROOT = join(import.meta.dirname, "..");
const SOURCE_DIRS = ["cmd", "platform", "services", "gateway"];
const NOT_PRODUCTION = /(\.test\.ts|\.suite\.ts|\.conformance\.ts)$|\/testing\//;
const NAME = /^SWITCHBOARD_[A-Z0-9_]*[A-Z0-9]$/;

interface Documented {
  readonly names: ReadonlySet<string>;
  /** "SWITCHBOARD_UPSTREAM_" for a row `SWITCHBOARD_UPSTREAM_<SERVICE>`. */
  readonly families: readonly string[];
}

function readmeTable(): Documented {
  const lines = readFileSync(join(ROOT, "README.md"), "utf8").split("\n");
  const start = lines.findIndex((l) => /^\|\s*variable\s*\|\s*default\s*\|/.test(l));
  if (start < 0) throw new Error('README.md has no "| variable | default |" table');
  const names = new Set<string>();
  const families: string[] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    const cell = line.split("|")[1] ?? "";
    let area = "";
    for (const [, token] of cell.matchAll(/`([^`]+)`/g)) {
      const t = token!.trim();
      const family = /^(SWITCHBOARD_[A-Z0-9_]*_)<[A-Z_]+>$/.exec(t);
      if (family) families.push(family[1]!);
      else if (NAME.test(t)) {
        names.add(t);
        area ||= /^SWITCHBOARD_[A-Z0-9]+_/.exec(t)?.[0] ?? "";
      } else if (/^_[A-Z0-9_]+$/.test(t) && area) names.add(`${area}${t.slice(1)}`);
    }
  }
  return { names, families };
}

function productionSources(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((entry) => {
    const rel = `${dir}/${entry}`;
    if (statSync(join(ROOT, rel)).isDirectory()) return productionSources(rel);
    return rel.endsWith(".ts") && !NOT_PRODUCTION.test(rel) ? [rel] : [];
  });
}

/** Variable names (and family prefixes) written as string literals, with a file that names each. */
function namesInSources(): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of SOURCE_DIRS.flatMap(productionSources)) {
    const source = ts.createSourceFile(file, readFileSync(join(ROOT, file), "utf8"), ts.ScriptTarget.Latest);
    const visit = (node: ts.Node): void => {
      if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) {
        if (NAME.test(node.text) && !found.has(node.text)) found.set(node.text, file);
      } else if (ts.isTemplateExpression(node)) {
        const head = node.head.text;
        if (/^SWITCHBOARD_[A-Z0-9_]*_$/.test(head) && !found.has(`${head}*`)) found.set(`${head}*`, file);
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return found;
}

/** An environment that answers nothing and remembers every name asked for. */
function recordingEnv(asked: Set<string>): Record<string, string | undefined> {
  return new Proxy({} as Record<string, string | undefined>, {
    get(_t, key) {
      if (typeof key === "string") asked.add(key);
      return undefined;
    },
  });
}

const isDocumented = (doc: Documented, name: string): boolean =>
  name.endsWith("*") ? doc.families.includes(name.slice(0, -1)) : doc.names.has(name) || doc.families.some((f) => name.startsWith(f));

describe("README configuration table", () => {
  const doc = readmeTable();

  it("parses the table, shorthand rows included", () => {
    expect(doc.names.has("SWITCHBOARD_ENGINE")).toBe(true);
    expect(doc.names.has("SWITCHBOARD_CASSANDRA_KEYSPACE")).toBe(true);
    expect(doc.names.has("SWITCHBOARD_GATEWAY_H2_MAX_SESSION_MEMORY_MB")).toBe(true);
    expect(doc.families).toContain("SWITCHBOARD_UPSTREAM_");
  });

  it("names every SWITCHBOARD_* variable written in the production sources", () => {
    const found = namesInSources();
    expect(found.size).toBeGreaterThan(30);
    const missing = [...found].filter(([name]) => !isDocumented(doc, name)).map(([name, file]) => `${name} (${file})`);
    expect(missing, "add a row for each to README.md's configuration table").toEqual([]);
  });

  it("names every variable the configuration readers ask for", () => {
    const asked = new Set<string>();
    loadConfig(recordingEnv(asked));
    readGatewayAuthSettings(recordingEnv(asked), "memory");
    readOwnHosts("http://localhost:8080", recordingEnv(asked));
    readBlocklist(recordingEnv(asked));
    loadCodeKey("memory", undefined, recordingEnv(asked));
    const read = [...asked].filter((k) => k.startsWith("SWITCHBOARD_"));
    expect(read.length).toBeGreaterThan(30);
    const missing = read.filter((name) => !isDocumented(doc, name));
    expect(missing, "add a row for each to README.md's configuration table").toEqual([]);
  });
});
