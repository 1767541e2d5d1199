// A peer for benchmarks: the demo contract's hot subset (PROTOCOL.md
// sections 2 and 7) on Bun's native pub/sub. Run: bun bun-server.js [port]
// [--compression] (permessage-deflate on, Bun's perMessageDeflate).
// Prints `listening on http://127.0.0.1:<port>` like ori-demo.
const port = Number(process.argv[2] ?? 0);
const compression = process.argv.includes("--compression");
const TOPIC = /^[A-Za-z0-9_:.-]{1,256}$/;

const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  async fetch(req, server) {
    const url = new URL(req.url);
    if (url.pathname === "/ws") {
      return server.upgrade(req, { data: { id: crypto.randomUUID() } })
        ? undefined
        : new Response(JSON.stringify({ error: "Expected a WebSocket upgrade request" }), { status: 400 });
    }
    const notify = url.pathname.match(/^\/api\/notify\/([^/]+)$/);
    if (notify && req.method === "POST") {
      const topic = decodeURIComponent(notify[1]);
      if (!TOPIC.test(topic) || topic.startsWith("__")) {
        return Response.json({ error: "Invalid topic" }, { status: 400 });
      }
      let body;
      try {
        body = await req.json();
      } catch {
        return Response.json({ error: "Invalid JSON" }, { status: 400 });
      }
      const correlationId = req.headers.get("x-correlation-id") || crypto.randomUUID();
      server.publish(
        topic,
        JSON.stringify({ type: "notification", message: body.message, timestamp: Date.now(), correlationId }),
      );
      return Response.json({ sent: true });
    }
    if (url.pathname === "/api/stats") {
      return Response.json({ connections: server.pendingWebSockets });
    }
    return Response.json({ error: "Not Found" }, { status: 404 });
  },
  websocket: {
    perMessageDeflate: compression,
    open(ws) {
      ws.subscribe("__broadcast__");
    },
    message(ws, msg) {
      if (typeof msg !== "string") return;
      if (msg === "2") return void ws.send("3");
      let m;
      try {
        m = JSON.parse(msg);
      } catch {
        return void ws.send(JSON.stringify({ type: "error", message: "Invalid JSON" }));
      }
      if (m.type === "room.join" && typeof m.room === "string" && TOPIC.test(m.room) && !m.room.startsWith("__")) {
        ws.subscribe(m.room);
      } else if (m.type === "room.leave" && typeof m.room === "string") {
        ws.unsubscribe(m.room);
      } else {
        ws.send(JSON.stringify({ type: "error", message: `Unknown message type: ${m.type}` }));
      }
    },
  },
});
console.log(`listening on http://127.0.0.1:${server.port}`);
