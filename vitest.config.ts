import { defineConfig } from "vitest/config";

// Two projects: `unit` needs nothing but Node; `integration` talks to real servers that
// testkit/global-setup.ts starts once per run (and stops, even when tests fail).
export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["**/*.test.ts"],
          exclude: ["**/*.int.test.ts", "node_modules/**"],
          // Several unit files start the mesh as a child process (tsx start-up takes seconds on a
          // loaded 2-core machine); this is a hang guard, not a speed assertion.
          testTimeout: 30_000,
        },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["**/*.int.test.ts"],
          exclude: ["node_modules/**"],
          globalSetup: ["testkit/global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
