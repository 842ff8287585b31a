// The scaling benchmark's Node.js service: GET / answers {"app": "node-hello", "pid": ...} on $PORT.
// Node's own http module, no dependencies: a cold start measures node's start, not a framework's.
const http = require("http");

const port = Number(process.env.PORT || 8080);

const server = http.createServer((req, res) => {
  const body = JSON.stringify({ app: "node-hello", pid: process.pid });
  res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
});

server.listen(port, "127.0.0.1", () => console.log(`node-hello listening on ${port}`));

// Stop promptly when the platform asks.
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
