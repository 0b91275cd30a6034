// Drives real NATS JavaScript clients for edgebus's WebSocket interop tests.
//
//   node nats_client.mjs '<json script>'
//
// The script names connections and then runs steps in order; every result is one JSON line on
// stdout, so the Python test can read along and answer (e.g. publish once "ready" is printed).
//
//   {"connections": {"ws": {"transport": "ws", "servers": "ws://127.0.0.1:PORT", ...opts},
//                    "tcp": {"transport": "tcp", "servers": "nats://127.0.0.1:PORT"}},
//    "steps": [{"op": "sub", "conn": "ws", "id": "s1", "subject": "a.>", "max": 2},
//              {"op": "reply", "conn": "tcp", "subject": "svc", "prefix": "echo:"},
//              {"op": "flush", "conn": "ws"},
//              {"op": "ready"},                       // prints {"event":"ready"}, waits for a stdin line
//              {"op": "pub", "conn": "ws", "subject": "x", "data": "hi", "headers": {"k": "v"}},
//              {"op": "pub", "conn": "ws", "subject": "x", "size": 200000},   // 'x' * size
//              {"op": "request", "conn": "ws", "subject": "svc", "data": "q", "timeout": 5000},
//              {"op": "wait", "id": "s1"}]}          // prints the subscription's messages
//
// nats.ws needs a W3C WebSocket global. Node 20 has none by default, so `"shim": "ws"` (the
// default) installs the `ws` package's WebSocket (which also offers permessage-deflate, and can
// send the Cookie and Origin headers a browser would: "headers", "origin"), and
// `"shim": "native"` uses Node's own (undici) WebSocket: run node with --experimental-websocket.
import { createInterface } from "node:readline";
import { WebSocket as WsWebSocket } from "ws";

const script = JSON.parse(process.argv[2]);
if ((script.shim ?? "ws") === "ws") {
  // what a browser adds by itself: cookies for the site and its Origin; "deflate": false
  // stops `ws` from offering permessage-deflate (it does by default)
  const options = { perMessageDeflate: script.deflate ?? true };
  if (script.headers) options.headers = script.headers;
  if (script.origin) options.origin = script.origin;
  globalThis.WebSocket = class extends WsWebSocket {
    constructor(url, protocols) {
      super(url, protocols ?? [], options);
    }
  };
} else if (typeof globalThis.WebSocket === "undefined") {
  console.log(JSON.stringify({ event: "error", error: "no native WebSocket in this node" }));
  process.exit(2);
}
const natsWs = await import("nats.ws");
const natsTcp = await import("nats");

const out = (o) => console.log(JSON.stringify(o));
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const td = new TextDecoder();
const te = new TextEncoder();

const conns = {};
const subs = {};

function payload(step) {
  if (step.size !== undefined) return te.encode("x".repeat(step.size));
  return te.encode(step.data ?? "");
}

function msgInfo(m) {
  const h = {};
  if (m.headers) {
    for (const [k, v] of m.headers) h[k] = v;
  }
  const data = td.decode(m.data);
  return {
    subject: m.subject,
    reply: m.reply || null,
    size: m.data.length,
    data: data.length > 200 ? data.slice(0, 20) + "..." : data,
    headers: h,
  };
}

async function main() {
  for (const [name, spec] of Object.entries(script.connections ?? {})) {
    const { transport, ...opts } = spec;
    const lib = transport === "tcp" ? natsTcp : natsWs;
    try {
      const nc = await lib.connect({ reconnect: false, ...opts });
      conns[name] = { nc, lib };
      out({ event: "connected", conn: name, info: nc.info });
    } catch (err) {
      out({ event: "connect_error", conn: name, code: err.code ?? null, error: String(err.message ?? err) });
      return;
    }
  }
  for (const step of script.steps ?? []) {
    const c = conns[step.conn];
    switch (step.op) {
      case "sub": {
        const got = [];
        const sub = c.nc.subscribe(step.subject, { max: step.max, queue: step.queue });
        const done = (async () => {
          for await (const m of sub) got.push(msgInfo(m));
        })();
        subs[step.id] = { got, done };
        break;
      }
      case "reply": {
        c.nc.subscribe(step.subject, {
          callback: (err, m) => {
            if (err) return;
            const h = c.lib.headers();
            h.set("Served-By", step.conn);
            m.respond(te.encode((step.prefix ?? "") + td.decode(m.data)), { headers: h });
          },
        });
        break;
      }
      case "flush":
        await c.nc.flush();
        break;
      case "ready":
        out({ event: "ready" });
        await stdinLines.next();
        break;
      case "pub": {
        let headers;
        if (step.headers) {
          headers = c.lib.headers();
          for (const [k, v] of Object.entries(step.headers)) headers.set(k, v);
        }
        c.nc.publish(step.subject, payload(step), { headers });
        break;
      }
      case "request": {
        try {
          const m = await c.nc.request(step.subject, payload(step), { timeout: step.timeout ?? 5000 });
          out({ event: "reply", id: step.id ?? null, msg: msgInfo(m) });
        } catch (err) {
          out({ event: "request_error", id: step.id ?? null, code: err.code ?? null, error: String(err.message ?? err) });
        }
        break;
      }
      case "wait": {
        await subs[step.id].done;
        out({ event: "messages", id: step.id, msgs: subs[step.id].got });
        break;
      }
      default:
        throw new Error(`unknown step ${step.op}`);
    }
  }
  for (const [name, { nc }] of Object.entries(conns)) {
    await nc.drain();
    out({ event: "closed", conn: name });
  }
}

try {
  await main();
} catch (err) {
  out({ event: "error", error: String(err?.stack ?? err) });
  process.exitCode = 1;
}
process.exit();
