// An echo server on Node's ws with permessage-deflate on (every message compressed).
// Prints {"port": N} once listening on 127.0.0.1; echoes each message as it came.
const { WebSocketServer } = require("ws");

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: { threshold: 0 } });
wss.on("listening", () => console.log(JSON.stringify({ port: wss.address().port })));
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
