// Starts what the client's and the page's tests run against: the real
// pubsub-server binary and, for tests that restart it, an in-memory Kafka in a
// process of its own (testkafka) that keeps its records across the restart.
import { execFile, spawn } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

/** The repository root. */
export const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));

let binaries;

/** Builds pubsub-server and testkafka once per test process. */
export function buildBinaries() {
  binaries ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), "pubsub-js-test-"));
    const bins = { server: join(dir, "pubsub-server"), kafka: join(dir, "testkafka") };
    const go = promisify(execFile);
    await go("go", ["build", "-o", bins.server, "./cmd/pubsub-server"], { cwd: repoRoot });
    await go("go", ["build", "-o", bins.kafka, "./clients/js/test/testkafka"], { cwd: repoRoot });
    return bins;
  })();
  return binaries;
}

/** Resolves with the first line of lines that matches re, or rejects after timeoutMs. */
function waitForLine(lines, re, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      lines.off("line", onLine);
      reject(new Error(`${what}: no line matching ${re} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onLine = (line) => {
      const m = re.exec(line);
      if (!m) return;
      clearTimeout(timer);
      lines.off("line", onLine);
      resolve(m);
    };
    lines.on("line", onLine);
  });
}

/**
 * Starts testkafka with topics ("orders:2,secret:1") and returns its brokers,
 * produce(topic, partition, count, first, size) -> offsets, deleteRecords,
 * deleteTopic and stop().
 */
export async function startKafka(t, topics) {
  const bins = await buildBinaries();
  const proc = spawn(bins.kafka, ["-topics", topics], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: proc.stdout });
  const replies = [];
  let waiting = null;
  lines.on("line", (line) => {
    const msg = JSON.parse(line);
    if (waiting) {
      const w = waiting;
      waiting = null;
      w(msg);
    } else {
      replies.push(msg);
    }
  });
  const next = () => replies.length > 0 ? Promise.resolve(replies.shift()) : new Promise((r) => { waiting = r; });
  const stop = () => {
    proc.stdin.end();
    proc.kill();
  };
  t.after(stop);
  const { brokers } = await next();
  let queue = Promise.resolve();
  /** Sends one request to testkafka and resolves with its reply, one at a time. */
  const call = (req) => {
    const result = queue.then(async () => {
      proc.stdin.write(JSON.stringify(req) + "\n");
      const reply = await next();
      if (reply.error) throw new Error(`${req.op ?? "produce"}: ${reply.error}`);
      return reply;
    });
    queue = result.catch(() => undefined);
    return result;
  };
  return {
    brokers,
    /**
     * Produces count records (JSON values padded to at least size bytes, a
     * header, snappy batches); resolves with their offsets.
     */
    async produce(topic, partition, count, first = 0, size = 0) {
      return (await call({ topic, partition, count, first, size })).offsets;
    },
    /** Moves a partition's log start to offset, as retention does. */
    async deleteRecords(topic, partition, offset) {
      await call({ op: "delete_records", topic, partition, offset });
    },
    /** Deletes a topic. */
    async deleteTopic(topic) {
      await call({ op: "delete_topic", topic });
    },
    stop,
  };
}

/**
 * A pub-sub server configuration for cluster "kafka" of brokers, allowing
 * topics (plus extra keys of the cluster, and top-level keys such as identity).
 */
export function clusterConfig(brokers, topics, extra = {}, top = {}) {
  return JSON.stringify({
    ...top,
    kafka_clusters: { kafka: { brokers, ...(topics ? { topics } : {}), ...extra } },
  });
}

/**
 * An identity provider for tests: an Ed25519 key whose public half is in a
 * JWK Set file (jwksFile, for identity.jwt.jwks_file), and token(claims,
 * lifeSeconds) signing JWTs with it (Node's crypto).
 */
export async function startIssuer() {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const dir = await mkdtemp(join(tmpdir(), "pubsub-js-jwks-"));
  const jwksFile = join(dir, "jwks.json");
  await writeFile(jwksFile, JSON.stringify({ keys: [{ ...publicKey.export({ format: "jwk" }), kid: "test", alg: "EdDSA", use: "sig" }] }));
  const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
  return {
    jwksFile,
    token(claims, lifeSeconds = 600) {
      const input = `${b64({ alg: "EdDSA", typ: "JWT", kid: "test" })}.${b64({ exp: Math.floor(Date.now() / 1000) + lifeSeconds, ...claims })}`;
      return `${input}.${sign(null, Buffer.from(input), privateKey).toString("base64url")}`;
    },
  };
}

/**
 * Runs pubsub-server (args, e.g. ["-config", file]; none for development
 * mode) and returns {addr, url(name), pageURL, stop(), restart()}. restart
 * stops it with SIGTERM and starts it again on the same port.
 */
export async function startServer(t, args = []) {
  const bins = await buildBinaries();
  let proc;
  let addr = "127.0.0.1:0";
  const log = [];
  const launch = async () => {
    // Port 0 for the metrics listener too: test servers run side by side.
    proc = spawn(bins.server, ["-listen", addr, "-metrics-listen", "127.0.0.1:0", ...args], { stdio: ["ignore", "ignore", "pipe"] });
    const lines = createInterface({ input: proc.stderr });
    lines.on("line", (l) => log.push(l));
    const exited = new Promise((resolve) => proc.once("exit", (code, signal) => resolve(code ?? signal)));
    const started = waitForLine(lines, /msg="live page" url=http:\/\/(\S+?)\//, 30_000, "pubsub-server");
    const m = await Promise.race([started, exited.then((c) => { throw new Error(`pubsub-server exited (${c}):\n${log.join("\n")}`); })]);
    addr = m[1];
    proc.exited = exited;
  };
  const stop = async () => {
    if (!proc || proc.exitCode !== null) return;
    proc.kill("SIGTERM");
    await proc.exited;
  };
  t.after(stop);
  await launch();
  return {
    get addr() { return addr; },
    url: (name = "kafka") => `ws://${addr}/${name}`,
    get pageURL() { return `http://${addr}/`; },
    log,
    stop,
    async restart() {
      await stop();
      await launch();
    },
  };
}

/** Resolves when check() returns a truthy value, polling every 10 ms; rejects after timeoutMs. */
export async function eventually(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
