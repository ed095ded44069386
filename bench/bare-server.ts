// The ceiling of bench:http: a bare node:http server on one thread that reads the request
// body and answers a small JSON 201, with none of the engine's parsing, routing, shard
// hops or fsyncs. It prints `listening <port>` on stdout once it serves; SIGTERM stops it.

import { createServer } from 'node:http';

const reply = JSON.stringify({ reservationId: '0.1abcdefgh', sku: 'bench-0', buyerId: 'bare', qty: 1, status: 'held', expiresAt: 0 });
const replyBytes = Buffer.byteLength(reply);

const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  let bytes = 0;
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
  });
  req.on('end', () => {
    res.writeHead(201, { 'content-type': 'application/json; charset=utf-8', 'content-length': replyBytes, 'x-body-bytes': bytes });
    res.end(reply);
  });
});

server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address !== null ? address.port : 0}\n`);
});

process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
