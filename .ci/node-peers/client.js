// A Node ws client with permessage-deflate on: connects to argv[2], prints
// {"extensions": ...} when open, sends a text message, a binary one and a text message
// in two fragments, then prints what came back as one JSON object and closes.
const WebSocket = require("ws");

const ws = new WebSocket(process.argv[2], { perMessageDeflate: { threshold: 0 } });
const got = [];
ws.on("open", () => {
  console.log(JSON.stringify({ extensions: ws.extensions }));
  ws.send("hello from node ".repeat(100));
  ws.send(Buffer.alloc(4096, 7));
  ws.send("part1 ", { fin: false });
  ws.send("part2", { fin: true });
});
ws.on("message", (data, isBinary) => {
  got.push(isBinary ? data.length : data.toString());
  if (got.length === 3) {
    console.log(JSON.stringify({ text: got[0], binary: got[1], fragmented: got[2] }));
    ws.close(1000);
  }
});
ws.on("error", (err) => {
  console.error(String(err));
  process.exit(1);
});
