// Bundles the live page into ../../web/static (embedded by the Go server; the
// environment variable PAGE_OUT_DIR writes it elsewhere) and reports the size
// of the client library alone, minified and gzipped.
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";

const out = process.env.PAGE_OUT_DIR
  ? pathToFileURL(`${process.env.PAGE_OUT_DIR}/`)
  : new URL("../../../web/static/", import.meta.url);
await mkdir(out, { recursive: true });
await build({
  entryPoints: [new URL("../page/page.ts", import.meta.url).pathname],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  legalComments: "none",
  outfile: new URL("app.js", out).pathname,
  logLevel: "warning",
});
for (const f of ["index.html", "style.css", "favicon.svg"]) await copyFile(new URL(`../page/${f}`, import.meta.url), new URL(f, out));

const lib = await build({
  entryPoints: [new URL("../src/index.ts", import.meta.url).pathname],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  legalComments: "none",
  write: false,
});
const code = lib.outputFiles[0].contents;
console.log(`client bundle (with @bufbuild/protobuf): ${code.length} bytes minified, ${gzipSync(code).length} bytes gzipped`);
