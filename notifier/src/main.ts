// Composition root: the shared one (config -> clients -> wait for the servers -> start -> shutdown
// hooks) with this service's start.
import { runService } from '@order-pipeline/shared';
import { start } from './app.js';

await runService('notifier', start);
