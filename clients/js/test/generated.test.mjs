// The committed generated code and built page are what one command makes
// from their sources: `npm run generate` (needs protoc, Debian's
// protobuf-compiler) for src/gen, `npm run build` for ../../web/static.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const pkg = fileURLToPath(new URL("../", import.meta.url));
const run = promisify(execFile);

function hasProtoc() {
  try {
    execFileSync("protoc", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

test("src/gen is what `npm run generate` makes from proto/pubsub.proto", { skip: !hasProtoc() && "protoc not installed" }, async () => {
  const dir = await mkdtemp(join(tmpdir(), "pubsub-gen-"));
  await run("npm", ["run", "--silent", "generate"], { cwd: pkg, env: { ...process.env, OUT_DIR: dir } });
  const fresh = await readFile(join(dir, "pubsub.ts"), "utf8");
  const committed = await readFile(join(pkg, "src/gen/pubsub.ts"), "utf8");
  assert.ok(fresh === committed, "src/gen/pubsub.ts is stale: run `npm run generate` in clients/js");
});

test("web/static is what `npm run build` bundles from page/ and src/", async () => {
  const dir = await mkdtemp(join(tmpdir(), "pubsub-page-"));
  await run("node", ["scripts/bundle.mjs"], { cwd: pkg, env: { ...process.env, PAGE_OUT_DIR: dir } });
  for (const f of ["app.js", "index.html", "style.css", "favicon.svg"]) {
    const fresh = await readFile(join(dir, f), "utf8");
    const committed = await readFile(join(pkg, "../../web/static", f), "utf8");
    assert.ok(fresh === committed, `web/static/${f} is stale: run \`npm run build\` in clients/js`);
  }
});
