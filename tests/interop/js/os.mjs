// Object Store through nats.js: put/get blobs, info, list, watch, links, delete, status.
import nats from "nats";

const { connect } = nats;
const out = {};
const nc = await connect({ servers: process.argv[2] });
const js = nc.jetstream();
const os = await js.views.os("O", { description: "objs" });
const size = Number(process.argv[3] || "2000000");
const data = new Uint8Array(size);
for (let i = 0; i < size; i++) data[i] = (i * 31) % 251;
const info = await os.putBlob({ name: "blob" }, data);
out.put = [info.size, info.chunks];
const back = await os.getBlob("blob");
let same = back.length === data.length;
for (let i = 0; same && i < data.length; i += 997) same = back[i] === data[i];
out.roundtrip = same;
await os.putBlob({ name: "small", description: "s" }, new TextEncoder().encode("hi"));
out.info = [(await os.info("small")).size, (await os.info("small")).description];
const l = await os.link("small-link", await os.info("small"));
out.link = [l.name, l.options.link.name];
out.viaLink = new TextDecoder().decode(await os.getBlob("small-link"));
const other = await js.views.os("O2");
await os.linkStore("store-link", other);
out.list = (await os.list()).map((i) => i.name).sort();
const seen = [];
const w = await os.watch({ includeHistory: true });
for await (const e of w) { if (e === null) break; seen.push(e.name); if (seen.length === 4) break; }
out.watch = seen.sort();
await os.delete("small");
out.afterDelete = [(await os.info("small"))?.deleted ?? null, await os.getBlob("small")];
const st = await os.status();
out.status = [st.bucket, st.description, st.sealed];
await nc.close();
console.log(JSON.stringify(out));
