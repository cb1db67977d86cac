// The shared package's public surface: what the services, the tools and the tests use. Modules
// not listed here (the broker's parts, the raw script commands) are internals of this package.

export {
  brokerConfig,
  loadConfig,
  configOrExit,
  ConfigError,
  DEFAULT_ORDER_RETENTION_DAYS,
  DEFAULT_RETRY_SCHEDULE,
  parseDuration,
  webhookSecretKey,
  orderRetentionMs,
  type ServiceName,
  type QueueType,
  type Config,
  type LogLevel,
  type RedisConfig,
  type AuthConfig,
} from './config.js';
export {
  SCOPES,
  CLOCK_TOLERANCE_SECONDS,
  createAuthenticator,
  requireScope,
  callerOf,
  subjectOf,
  bearerToken,
  secretsEqual,
  checkMetricsToken,
  type Scope,
  type Caller,
  type Authenticator,
} from './auth.js';
export { createLogger, type Logger } from './logger.js';
export { keys, ORDER_STATUSES, type OrderStatus } from './keys.js';
export { parseHistory } from './history.js';
export {
  PoisonMessageError,
  OrderExpiredError,
  PayloadMismatchError,
  RetryLaterError,
  TransientError,
  PublishError,
  isOutage,
} from './errors.js';
export {
  dlqOf,
  queueArguments,
  topologyFor,
  applyTopology,
  exchanges,
  queues,
  routingKeys,
  DELIVERY_LIMIT,
  WORK_QUEUES,
  DEAD_LETTER_QUEUES,
  DELAY_JITTER,
  WEBHOOK_ATTEMPT_HEADER,
  formatDelay,
  delayQueueOf,
  delayQueueDecl,
  applyDelayQueues,
} from './topology.js';
export {
  validateOrder,
  documentValidator,
  canonicalOrder,
  makeEvent,
  encodeEvent,
  eventJson,
  orderJson,
  orderMembers,
  decodeEvent,
  EVENT_VERSION,
  EVENT_VERSION_HEADER,
  CANCEL_EVENTS,
  validateCancelRequest,
  type CancelRequest,
  ID_PATTERN,
  ID_REGEX,
  type EventType,
  type RejectReason,
  type Order,
  type OrderEvent,
  type Validation,
  type FieldError,
} from './messages.js';
export { createRedis, reconnectAfterUnaskedEnd, redisReady, type RedisClient } from './redis.js';
export { isoAt, isoNow } from './clock.js';
export { createBatcher } from './batch.js';
export {
  claimOrders,
  acceptOrders,
  releaseClaim,
  type Claim,
  type ClaimResult,
  type Acceptance,
  type AcceptResult,
  type ReleaseResult,
} from './scripts/idempotency.js';
export {
  reserveOrder,
  expireOrder,
  type ReserveResult,
  type ExpireResult,
  type DecidedBefore,
  type PayloadMismatch,
  type PayloadField,
} from './scripts/orders.js';
export { cancelOrder, recordCancelRequest, type CancelResult, type CancelRequestResult } from './scripts/cancellation.js';
export {
  claimNotification,
  recordNotificationSent,
  recordNotificationFailed,
  type NotificationClaim,
  type NotificationKind,
} from './scripts/notifications.js';
export { adjustInventory, MAX_INVENTORY_LEVEL, MAX_INVENTORY_DELTA, type Adjustment, type AdjustResult } from './scripts/inventory.js';
export { scripts, ScriptReplyError } from './scripts/commands.js';
export { NotEnoughReplicasError, replicationPolicyOf, type ReplicationPolicy } from './scripts/replication.js';
export { listIndex, type IndexEntry } from './scripts/listing.js';
export { countRequest, type RateCount } from './scripts/rate-limit.js';
export {
  waitForBroker,
  connectBroker,
  createBroker,
  AckBatcher,
  nodeOrder,
  redactUrl,
  type NodeOrder,
  RETRY_COUNT_HEADER,
  attemptOf,
  decide,
  defaultBackoffMs,
  outageBackoffMs,
  coalesceFrameWrites,
  DEAD_LETTER_HEADERS,
  type Decision,
  type ConsumeContext,
  type Broker,
  type Publish,
  type DeadLetterReason,
  type RetryLimits,
  type HandleOutcome,
  type BrokerObserver,
  type BrokerOptions,
  type ConsumeOptions,
  type Consumer,
} from './broker/index.js';
export {
  slug,
  problemMiddleware,
  createMetrics,
  timingMiddleware,
  requestSpan,
  tracedRoute,
  opsMiddleware,
  listen,
  closeServer,
  dependencyChecks,
  startOpsServer,
  HttpProblem,
  PROBLEM_TYPES,
  openapiRoute,
  type Metrics,
} from './http.js';
export { OPENAPI_TEXT, openapiDocument, OPENAPI_SCHEMA_ID, OPENAPI_KEYWORDS } from './openapi.js';
export {
  createServiceClients,
  runService,
  startConsumerService,
  type ServiceDeps,
  type RunningService,
  type ConsumerDeps,
} from './startup.js';
export { brokerMetrics, observeRedis, DEAD_LETTER_REASONS } from './metrics.js';
export {
  setupTracing,
  forOrder,
  orderBindings,
  traceHeaders,
  endWithError,
  ROOT_CONTEXT,
  SpanKind,
  trace,
  ATTR,
  type Context,
  type Span,
  type Tracing,
} from './tracing.js';
export { describeDeadLetter, listDeadLetters, replayDeadLetters, purgeDeadLetters, type DeadLetter, type ReplayResult } from './dlq.js';
