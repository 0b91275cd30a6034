// Key-Value through nats.js: put/get/create/update/delete/purge/keys/history/watch/status.
import nats from "nats";

const { connect, StringCodec } = nats;
const sc = StringCodec();
const out = {};
const nc = await connect({ servers: process.argv[2] });
const js = nc.jetstream();
const kv = await js.views.kv("B", { history: 5 });
const r1 = await kv.put("a", sc.encode("1"));
await kv.put("a", sc.encode("2"));
out.get = [sc.decode((await kv.get("a")).value), (await kv.get("a")).revision, r1];
const rc = await kv.create("b", sc.encode("x"));
try { await kv.create("b", sc.encode("y")); out.dupCreate = "ok"; } catch (e) { out.dupCreate = "error"; }
await kv.update("b", sc.encode("z"), rc);
try { await kv.update("b", sc.encode("w"), rc); out.badUpdate = "ok"; } catch (e) { out.badUpdate = "error"; }
await kv.put("c.d", sc.encode("dots"));
const keys = [];
for await (const k of await kv.keys()) keys.push(k);
out.keys = keys.sort();
const hist = [];
for await (const e of await kv.history({ key: "a" })) hist.push(sc.decode(e.value));
out.history = hist;
await kv.delete("b");
out.afterDelete = (await kv.get("b"))?.operation ?? null;
await kv.purge("a");
out.afterPurge = (await kv.get("a"))?.operation ?? null;

const w = await kv.watch({ key: "w.>" });
await kv.put("w.1", sc.encode("one"));
await kv.put("w.2", sc.encode("two"));
await kv.delete("w.1");
const seen = [];
for await (const e of w) { seen.push([e.key, e.operation]); if (seen.length === 3) break; }
out.watch = seen;

// a watcher over existing values replays the latest entry per key first
const w2 = await kv.watch({ key: "w.*" });
const init = [];
for await (const e of w2) { init.push([e.key, e.operation, e.delta]); if (init.length === 2) break; }
out.initial = init;
const st = await kv.status();
out.status = [st.bucket, st.history, st.values];
await nc.close();
console.log(JSON.stringify(out));
