// closeServer: clients that keep their connections busy must not keep a stopping service alive.
// A request that arrives on a kept-alive connection after the stop is answered with
// `Connection: close`, idle connections are closed as they appear, and a connection that never
// ends (a streaming answer) is cut after the grace period.
import { Agent, createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { closeServer } from '../src/index.js';

function get(port: number, agent?: Agent): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('closeServer', () => {
  it('answers a request that came on a kept-alive connection after the stop with Connection: close, and finishes at once', async () => {
    const server = createServer((_req, res) => setTimeout(() => res.end('ok'), 200));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    // One socket: the second request waits for the first and goes on the same connection.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const first = get(port, agent);
    const second = get(port, agent);
    await new Promise((r) => setTimeout(r, 50));
    const closed = closeServer(server, 10_000).then(() => Date.now());

    expect((await first).headers.connection).toBe('keep-alive');
    // The queued request goes out once the first answer is read: answered with Connection: close,
    // or, if the server found the connection idle in that moment and closed it first, reset
    // before it reached the server. Never a keep-alive answer from a stopping server.
    const outcome = await second.then(
      (res) => res.headers.connection,
      (err: NodeJS.ErrnoException) => err.code,
    );
    const answeredAt = Date.now();
    expect(['close', 'ECONNRESET']).toContain(outcome);
    // Without it the connection would stay for the keep-alive timeout (5 s), or for ever under load.
    expect((await closed) - answeredAt).toBeLessThan(1000);
    agent.destroy();
  });

  it('cuts a connection that never goes idle after the grace period', async () => {
    // A streaming answer that never ends (like a live page's event stream).
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: hello\n\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) =>
      request({ host: '127.0.0.1', port, path: '/' }, () => resolve())
        .on('error', () => undefined)
        .end(),
    );
    const started = Date.now();
    await closeServer(server, 300);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
