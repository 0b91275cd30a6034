// JetStream consumers through nats.js (npm `nats`): pull fetch/next/consume with every ack
// kind, the pull-based ordered consumer, legacy push subscriptions (queue, ordered) and the
// consumer management API. Prints one JSON object with what it observed.
import nats from "nats";

const { connect, StringCodec, AckPolicy, DeliverPolicy, consumerOpts, nanos } = nats;
const sc = StringCodec();
const out = {};
const nc = await connect({ servers: process.argv[2] });
const jsm = await nc.jetstreamManager();
const js = nc.jetstream();

await jsm.streams.add({ name: "S", subjects: ["foo.>"] });
for (let i = 0; i < 10; i++) await js.publish(`foo.${i % 3}`, sc.encode(`m${i}`));

// pull: fetch, acks of every kind
await jsm.consumers.add("S", { durable_name: "P", ack_policy: AckPolicy.Explicit, ack_wait: nanos(30000) });
const p = await js.consumers.get("S", "P");
const first = [];
for await (const m of await p.fetch({ max_messages: 3, expires: 2000 })) {
  first.push([sc.decode(m.data), m.info.streamSequence, m.info.pending, m.info.redeliveryCount]);
  // acks are processed asynchronously by nats-server: ask for a reply so the next request
  // cannot overtake the NAK/TERM
  if (m.seq === 1) await m.ackAck();
  else if (m.seq === 2) await nc.request(m.msg.reply, sc.encode("-NAK"));
  else await nc.request(m.msg.reply, sc.encode("+TERM bad"));
}
out.fetch = first;
const again = await p.next({ expires: 2000 });
out.redelivered = [sc.decode(again.data), again.info.redeliveryCount, again.info.deliverySequence];
again.working();
out.ackAck = await again.ackAck();
let ci = await p.info();
out.info = { delivered: ci.delivered.stream_seq, floor: ci.ack_floor.stream_seq,
             ack_pending: ci.num_ack_pending, pending: ci.num_pending };

// consume(): a long-running pull with heartbeats
const consumed = [];
const iter = await p.consume({ max_messages: 4, idle_heartbeat: 1000, expires: 3000 });
for await (const m of iter) {
  consumed.push(m.info.streamSequence);
  m.ack();
  if (consumed.length === 7) break;
}
out.consumed = consumed;

// the pull-based ordered consumer (filtered, from a start sequence)
const oc = await js.consumers.get("S", { filterSubjects: ["foo.1"] });
const ordered = [];
for await (const m of await oc.fetch({ max_messages: 10, expires: 1000 })) ordered.push(m.info.streamSequence);
out.ordered = ordered;

// legacy push: queue group and an ordered push consumer
const opts = consumerOpts();
opts.durable("Q"); opts.queue("grp"); opts.deliverTo(nc._inbox ? "qd" : "qd"); opts.manualAck(); opts.ackExplicit();
const q1 = await js.subscribe("foo.>", opts);
const got = [];
const done = (async () => { for await (const m of q1) { got.push(m.seq); m.ack(); if (got.length === 10) break; } })();
await done;
out.queue = got.length;
const oopts = consumerOpts(); oopts.orderedConsumer();
const os = await js.subscribe("foo.2", oopts);
const pushOrdered = [];
for await (const m of os) { pushOrdered.push(sc.decode(m.data)); if (pushOrdered.length === 3) break; }
out.pushOrdered = pushOrdered;

// management
out.names = [];
for await (const n of jsm.consumers.list("S")) out.names.push(n.name);
out.names.sort();
await jsm.consumers.delete("S", "P");
try { await jsm.consumers.info("S", "P"); out.deleted = false; }
catch (e) { out.deleted = e.api_error ? e.api_error.err_code : String(e); }
try { await jsm.consumers.add("S", { durable_name: "X", deliver_policy: DeliverPolicy.StartSequence }); out.badCreate = "ok"; }
catch (e) { out.badCreate = e.api_error ? e.api_error.err_code : String(e); }

await nc.close();
console.log(JSON.stringify(out));
