import type { ServerResponse } from 'node:http';
import type { Logger } from '@order-pipeline/shared';
import type { NodeProber } from './nodes.js';
import type { Snapshot } from './snapshot.js';

// Server-sent events for the live page. One poll of Redis and the broker per tick serves every
// connected page; with nobody connected nothing is polled (no ticks, no node probes).

export interface LiveFeedOptions {
  /** Builds one snapshot (never rejects). */
  next: () => Promise<Snapshot>;
  /** Called when the first watcher arrives after a pause (the rates must not span the gap). */
  reset: () => void;
  prober: NodeProber;
  log: Logger;
  /** Time between the end of one snapshot and the start of the next. */
  everyMs?: number;
  /** Comment line sent this often so proxies keep an idle stream open (the snapshots also do). */
  heartbeatMs?: number;
  /** What EventSource waits before reconnecting (the `retry:` field). */
  retryMs?: number;
  /** More watchers than this get 503: each costs a socket and a copy of every snapshot. */
  maxClients?: number;
  /** A watcher that reads slower than this many buffered bytes is dropped. */
  maxBufferedBytes?: number;
}

export class LiveFeed {
  private readonly clients = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private ticking = false;
  /** Bumped on every start and stop, so a snapshot still in flight from a previous run is dropped. */
  private run = 0;
  private closed = false;
  private last: string | undefined;
  /** Snapshots built since start: one per tick whatever the number of watchers. */
  ticks = 0;

  constructor(private readonly opts: LiveFeedOptions) {}

  get watchers(): number {
    return this.clients.size;
  }

  /** True while ticks are scheduled (someone is watching). */
  get polling(): boolean {
    return this.ticking;
  }

  canAccept(): boolean {
    return !this.closed && this.clients.size < (this.opts.maxClients ?? 100);
  }

  /** Takes over `res` as an event stream until the client goes away or the feed closes. */
  attach(res: ServerResponse): void {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      // Tells nginx-style proxies not to buffer the stream.
      'X-Accel-Buffering': 'no',
      // The socket is the stream's alone: when the stream ends it closes, so stop() never waits on it.
      Connection: 'close',
      'X-Content-Type-Options': 'nosniff',
    });
    res.socket?.setNoDelay(true);
    res.write(`retry: ${this.opts.retryMs ?? 2000}\n\n`);
    // A page that connects between ticks gets the latest figures at once.
    if (this.last) res.write(this.last);
    this.clients.add(res);
    res.once('close', () => this.detach(res));
    // A client gone before this point never sends 'close' again: nobody to tick for.
    if (!res.socket || res.socket.destroyed) {
      this.detach(res);
      return;
    }
    if (!this.ticking) this.startTicking();
  }

  /** Ends every stream and stops polling; later requests are refused. */
  close(): void {
    this.closed = true;
    this.stopTicking();
    for (const res of this.clients) res.end();
    this.clients.clear();
  }

  private detach(res: ServerResponse): void {
    this.clients.delete(res);
    if (this.clients.size === 0) this.stopTicking();
  }

  private startTicking(): void {
    this.ticking = true;
    this.run++;
    this.last = undefined;
    this.opts.reset();
    this.opts.prober.start();
    this.heartbeat = setInterval(() => this.broadcast(': heartbeat\n\n'), this.opts.heartbeatMs ?? 15_000);
    void this.tick(this.run);
  }

  private stopTicking(): void {
    this.ticking = false;
    this.run++;
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    this.opts.prober.stop();
  }

  private async tick(run: number): Promise<void> {
    if (run !== this.run) return;
    let snapshot: Snapshot;
    try {
      snapshot = await this.opts.next();
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'live snapshot failed');
      this.schedule(run);
      return;
    }
    this.ticks++;
    // The snapshot may have finished after the last watcher left (and maybe a new one came).
    if (run !== this.run) return;
    this.last = `event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`;
    this.broadcast(this.last);
    this.schedule(run);
  }

  private schedule(run: number): void {
    // After the snapshot, not on a fixed interval: a slow Redis never gets overlapping reads.
    if (run === this.run) this.timer = setTimeout(() => void this.tick(run), this.opts.everyMs ?? 1000);
  }

  private broadcast(chunk: string): void {
    const limit = this.opts.maxBufferedBytes ?? 4 * 1024 * 1024;
    for (const res of this.clients) {
      if (res.writableLength > limit) {
        // A stalled reader would otherwise hold every snapshot in memory; it reconnects when it can.
        this.opts.log.warn('live page client too slow; dropping its stream');
        res.destroy();
        continue;
      }
      res.write(chunk);
    }
  }
}
