// KV and object-store scenario through nats.js v2's high-level JetStream views.
//
// Usage: node kv_obj.mjs nats://127.0.0.1:4222
// Buckets get REPLICAS replicas (environment, default 1).
// Exits non-zero with a message on the first mismatch.
import { connect } from "nats";
import { createHash, randomBytes } from "node:crypto";

const REPLICAS = Number(process.env.REPLICAS ?? "1");

const enc = (s) => new TextEncoder().encode(s);
const dec = (b) => new TextDecoder().decode(b);
const sha256 = (b) => createHash("sha256").update(b).digest();

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function expectReject(what, promise) {
  try {
    await promise;
  } catch {
    return;
  }
  throw new Error(`${what}: expected an error, got success`);
}

async function collect(iter) {
  const out = [];
  for await (const x of iter) out.push(x);
  return out;
}

// Resolves once cond() holds, polling; fails after 5 s.
async function waitFor(what, cond) {
  for (const deadline = Date.now() + 5000; !cond(); ) {
    if (Date.now() > deadline) throw new Error(`${what}: timed out`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function kvScenario(js, bucket) {
  const kv = await js.views.kv(bucket, { history: 5, replicas: REPLICAS });
  const r1 = await kv.put("a", enc("1"));
  await kv.put("b", enc("2"));
  let e = await kv.get("a");
  check(e && e.string() === "1" && e.revision === r1, `get a: ${e?.string()} rev ${e?.revision}, want 1 rev ${r1}`);

  const r2 = await kv.update("a", enc("3"), r1);
  check(r2 > r1, `update a: revision ${r2} not after ${r1}`);
  await expectReject("update a with stale revision", kv.update("a", enc("x"), r1));
  await expectReject("create of existing key b", kv.create("b", enc("x")));
  await kv.create("c", enc("new"));
  check((await kv.get("c"))?.string() === "new", "get c after create");

  for (const v of ["4", "5", "6", "7"]) await kv.put("a", enc(v));
  const hist = await collect(await kv.history({ key: "a" }));
  const vals = hist.map((h) => h.string());
  check(JSON.stringify(vals) === '["3","4","5","6","7"]', `history of a: ${vals}`);
  check(hist.every((h, i) => i === 0 || h.revision > hist[i - 1].revision), "history revisions not increasing");

  await kv.delete("a");
  e = await kv.get("a");
  check(e === null || e.operation === "DEL", `get a after delete: ${e?.operation} ${e?.string()}`);
  await kv.purge("b");
  e = await kv.get("b");
  check(e === null || e.operation === "PURGE", `get b after purge: ${e?.operation} ${e?.string()}`);
  const keys = (await collect(await kv.keys())).sort();
  check(JSON.stringify(keys) === '["c"]', `keys: ${keys}, want [c]`);

  // Everything the watcher yields before our live put is the initial state.
  let initialized = false;
  const seen = [];
  const w = await kv.watch({ initializedFn: () => (initialized = true) });
  const pump = (async () => { for await (const x of w) seen.push(x); })();
  await waitFor("watch initial values", () => initialized);
  await kv.put("d", enc("live"));
  await waitFor("watch live put", () => seen.some((x) => x.key === "d"));
  const at = seen.findIndex((x) => x.key === "d");
  const initial = seen.slice(0, at).filter((x) => x.operation === "PUT").map((x) => `${x.key}=${x.string()}`);
  check(JSON.stringify(initial) === '["c=new"]', `watch initial values: ${initial}`);
  check(seen[at].operation === "PUT" && seen[at].string() === "live", `watch live put: ${seen[at].operation}`);
  await kv.delete("d");
  await waitFor("watch live delete", () => seen.length > at + 1);
  check(seen[at + 1].key === "d" && seen[at + 1].operation === "DEL", `watch live delete: ${seen[at + 1].key} ${seen[at + 1].operation}`);
  w.stop();
  await pump;

  check(await kv.destroy(), "delete bucket");
  // bindOnly does no lookup in nats.js; status() asks the server about the bucket.
  const gone = await js.views.kv(bucket, { bindOnly: true });
  await expectReject("status of deleted bucket", gone.status());
}

async function objScenario(js, bucket) {
  const os = await js.views.os(bucket, { replicas: REPLICAS });
  const data = randomBytes(10 * 1024 * 1024 + 123);
  const sha = sha256(data);
  let info = await os.putBlob({ name: "big" }, data);
  check(info.chunks > 1, `put big: chunks ${info.chunks}, want several`);

  info = await os.info("big");
  check(info && info.size === data.length, `info size ${info?.size}, want ${data.length}`);
  const want = "SHA-256=" + sha.toString("base64url") + "=";
  check(info.digest === want, `info digest ${info.digest}, want ${want}`);

  const got = await os.getBlob("big");
  check(got && sha256(got).equals(sha), `get big: ${got?.length} bytes, content differs`);

  const names = async () => (await os.list()).map((i) => i.name);
  check(JSON.stringify(await names()) === '["big"]', `list: ${await names()}`);
  await os.putBlob({ name: "small" }, enc("hello"));
  await os.delete("big");
  check(JSON.stringify(await names()) === '["small"]', `list after delete: ${await names()}`);
  check(dec(await os.getBlob("small")) === "hello", "get small");

  check(await os.destroy(), "delete store");
}

const nc = await connect({ servers: process.argv[2] ?? "nats://127.0.0.1:4222" });
const tag = randomBytes(4).toString("hex");
try {
  const js = nc.jetstream();
  await kvScenario(js, `js_kv_${tag}`);
  await objScenario(js, `js_obj_${tag}`);
  await nc.close();
} catch (err) {
  const at = (err.stack ?? "").split("\n").find((l) => l.includes("kv_obj.mjs"));
  console.error(`nats.js: ${err.message}${at ? ` (${at.trim()})` : ""}`);
  process.exit(1);
}
