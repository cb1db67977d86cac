#!/usr/bin/env node
// `npm run dlq -- list|replay|purge [--queue <name>] [--limit <n>]`: the operator's tools for
// the dead-letter queues. A thin entry: the command line is in scripts/dlq/command.mjs, what each
// command does to the queues in shared/src/dlq.ts. Uses RABBITMQ_URLS (the first node that
// answers) and QUEUE_TYPE, as the services do.
//
// Exit codes: 0 done, 1 the broker could not be reached or refused, 2 bad arguments or settings.

import { connect } from 'amqplib';
import { ConfigError, applyTopology, brokerConfig, redactUrl } from '@order-pipeline/shared';
import { DLQ_USAGE, DlqUsageError, parseDlqArgs, runDlqCommand } from './dlq/command.mjs';

/**
 * @param {string} message
 * @returns {never}
 */
const fail = (message, code = 1) => {
  process.stderr.write(`dlq: ${message}\n`);
  process.exit(code);
};

let args;
let config;
try {
  args = parseDlqArgs(process.argv.slice(2));
  config = brokerConfig(process.env);
} catch (err) {
  if (err instanceof DlqUsageError) fail(`${err.message}\n${DLQ_USAGE}`, 2);
  if (err instanceof ConfigError) fail(`invalid configuration: ${err.message}`, 2);
  throw err;
}

/** @type {import('amqplib').ChannelModel | undefined} */
let connection;
const tried = [];
for (const url of config.rabbitmqUrls) {
  try {
    connection = await connect(url, { timeout: 5000 });
    break;
  } catch (err) {
    tried.push(`${redactUrl(url)}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
if (!connection) fail(`no broker node answered (${tried.join('; ')})`);

try {
  const ch = await connection.createConfirmChannel();
  // Declared as every service declares it, so the queues exist even on a fresh broker.
  await applyTopology(ch, config.queueType);
  for (const line of await runDlqCommand(ch, args)) process.stdout.write(`${line}\n`);
  await ch.close();
  await connection.close();
} catch (err) {
  await connection.close().catch(() => undefined);
  fail(err instanceof Error ? err.message : String(err));
}
