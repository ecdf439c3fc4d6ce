// dist/index.js (ESM, readable, with its source map) and dist/index.d.ts, from src/.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { build } from "esbuild";

rmSync("dist", { recursive: true, force: true });
await build({
  entryPoints: ["src/index.ts"],
  bundle: true,
  format: "esm",
  target: "es2020",
  platform: "neutral",
  sourcemap: true,
  outfile: "dist/index.js",
  logLevel: "warning",
});
execFileSync(
  "npx",
  ["tsc", "-p", "tsconfig.build.json"],
  { stdio: "inherit" },
);
