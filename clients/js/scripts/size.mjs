// The bundle a browser app ships: minified by esbuild, gzipped. Fails above the budget.
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

export const BUDGET = 4096;

export async function bundleSize() {
  const result = await build({
    entryPoints: ["src/index.ts"],
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2020",
    write: false,
  });
  const code = result.outputFiles[0].contents;
  return { minified: code.length, gzipped: gzipSync(code, { level: 9 }).length };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { minified, gzipped } = await bundleSize();
  console.log(`@refreshd/client: ${minified} bytes minified, ${gzipped} bytes gzipped (budget ${BUDGET})`);
  if (gzipped > BUDGET) {
    console.error(`over budget by ${gzipped - BUDGET} bytes`);
    process.exit(1);
  }
}
