import { pino, type Logger } from 'pino';
import { isoNow } from './clock.js';
import type { LogLevel, ServiceName } from './config.js';

export type { Logger };

/**
 * JSON lines on stdout, each carrying `service`; use `log.child({ orderId })` for anything about
 * an order so one order can be followed across the services' logs.
 */
export function createLogger(service: ServiceName | string, level: LogLevel | string = 'info'): Logger {
  return pino({
    level,
    base: { service },
    // pino.stdTimeFunctions.isoTime's text, from the per-millisecond clock (clock.ts).
    timestamp: () => `,"time":"${isoNow()}"`,
    formatters: { level: (label) => ({ level: label }) },
  });
}
