// Composition root: the shared one (config -> clients -> wait for the servers -> start -> shutdown
// hooks) with this service's start.
import { runService } from '@order-pipeline/shared';
import { start } from './app.js';

// Its claims and acceptances are already one script call per event-loop turn (createBatcher), so
// ioredis's auto-pipelining would only add a Pipeline per turn (see RedisClientOptions).
await runService('api-gateway', start, { redis: { autoPipelining: false } });
