import { defineConfig } from "vitest/config";

// Real tabs in Debian's Chromium, driven by playwright-core, against real refreshd servers started by the global
// setup. One file at a time: they share the servers and the machine's two cores.
export default defineConfig({
  test: {
    include: ["test/browser/**/*.test.ts"],
    environment: "node",
    globalSetup: ["test/browser/servers.ts"],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 120_000,
  },
});
