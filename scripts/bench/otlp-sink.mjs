// A small OTLP/HTTP receiver for the benchmark's tracing phase: the services export their spans to
// it (OTEL_EXPORTER_OTLP_ENDPOINT), it reads each export and answers 200 at once, so what is
// priced is the services' own work of recording and exporting spans, not a collector's.
// Prints {"port": N} on stdout once listening, then {"exports", "bytes"} received on SIGTERM.
//
// Environment: PORT (0 = any free port).

import http from 'node:http';

let exports = 0;
let bytes = 0;
const server = http.createServer((req, res) => {
  req.on('data', (chunk) => (bytes += chunk.length));
  req.on('end', () => {
    if (req.method === 'POST' && req.url === '/v1/traces') exports++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}\n`);
});
process.on('SIGTERM', () => {
  process.stdout.write(`${JSON.stringify({ exports, bytes })}\n`);
  server.close();
  process.exit(0);
});
