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
  for (const half of ["encode", "decode"]) {
    const fresh = await readFile(join(dir, half, "pubsub.ts"), "utf8");
    const committed = await readFile(join(pkg, "src/gen", half, "pubsub.ts"), "utf8");
    assert.ok(fresh === committed, `src/gen/${half}/pubsub.ts is stale: run \`npm run generate\` in clients/js`);
  }
});

test("web/static is what `npm run build` bundles from page/ and src/; the library is at most 12 KB gzipped", async () => {
  const dir = await mkdtemp(join(tmpdir(), "pubsub-page-"));
  const { stdout } = await run("node", ["scripts/bundle.mjs"], { cwd: pkg, env: { ...process.env, PAGE_OUT_DIR: dir } });
  const gzipped = Number(/(\d+) bytes gzipped/.exec(stdout)?.[1]);
  assert.ok(gzipped > 0 && gzipped <= 12 * 1024, `client bundle: ${stdout}`);
  for (const f of ["app.js", "index.html", "style.css", "favicon.svg"]) {
    const fresh = await readFile(join(dir, f), "utf8");
    const committed = await readFile(join(pkg, "../../web/static", f), "utf8");
    assert.ok(fresh === committed, `web/static/${f} is stale: run \`npm run build\` in clients/js`);
  }
});

test("the package: no internal members in its types, free of side effects, with source maps", async () => {
  const types = await readFile(join(pkg, "dist/subscription.d.ts"), "utf8") + await readFile(join(pkg, "dist/client.d.ts"), "utf8");
  for (const internal of ["deliverRecords", "resumeOptions", "SubscriptionOwner", "link:", "paused"]) {
    assert.ok(!types.includes(internal), `published types show ${internal}`);
  }
  assert.ok(types.includes("readonly closed: Promise<PubSubError | undefined>"));
  const manifest = JSON.parse(await readFile(join(pkg, "package.json"), "utf8"));
  assert.equal(manifest.sideEffects, false);
  const map = JSON.parse(await readFile(join(pkg, "dist/client.js.map"), "utf8"));
  assert.deepEqual(map.sources, ["../src/client.ts"]);
  assert.ok(manifest.files.includes("src"), "the sources the maps point at are published");
  assert.match(await readFile(join(pkg, "dist/client.js"), "utf8"), /\/\/# sourceMappingURL=client\.js\.map\s*$/);
});
