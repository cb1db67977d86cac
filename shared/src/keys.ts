// Every Redis key of the product, in one place. Nothing else concatenates key names.

/** The statuses order:<id> records (the API's `cancelling` is an accepted or created order with a cancel request). */
export const ORDER_STATUSES = ['accepted', 'created', 'rejected', 'expired', 'cancelled'] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

export const keys = {
  /** string integer: units in stock, seeded by operators with `SET inventory:<sku> 100`. */
  inventory: (sku: string) => `inventory:${sku}`,
  /** SCAN pattern that lists every inventory key. */
  inventoryPattern: 'inventory:*',
  inventoryPrefix: 'inventory:',
  /**
   * string (JSON): the answer of an inventory adjustment stored under its Idempotency-Key
   * (inventory-adjust-n.lua), scoped to the SKU. Not under `idemp:` (an order id may contain ':',
   * so `idemp:inventory:...` could be an order's record) nor `inventory:` (SCANned as SKUs). The
   * key has no ':', so sku and key split at the last ':'.
   */
  inventoryIdempotency: (sku: string, idempotencyKey: string) => `idemp-inventory:${sku}:${idempotencyKey}`,
  /** string (JSON): the gateway's idempotency record for an order id. */
  idempotency: (orderId: string) => `idemp:${orderId}`,
  /** hash: order status and fields; also the processor's once-only marker. */
  order: (orderId: string) => `order:${orderId}`,
  /** hash: the notification's status, attempts, channel, sentAt, lastError, lease. */
  notification: (orderId: string) => `notifications:${orderId}`,
  /**
   * hash: the order's cancellation notice, with the same fields as `notification`. The separator
   * is `/`, which no order id contains, so it never names another order's first-outcome record.
   */
  cancellationNotification: (orderId: string) => `notifications:${orderId}/cancelled`,
  /**
   * list: the order's history, oldest first: JSON entries {"at","event",...} appended by the script
   * that makes each change (accepted, created, rejected, expired, cancel_requested, cancelled,
   * notification_sent, notification_failed), kept to the newest 100. `history:` is no other key's
   * prefix, so one id names one list whatever `:` it holds.
   */
  history: (orderId: string) => `history:${orderId}`,
  /**
   * sorted set: every order's id, scored by its first write (the acceptance, or the processor's
   * decision when it came first) in ms; GET /orders reads it. Written by the script of each change;
   * entries past ORDER_RETENTION_DAYS are pruned by the scripts and the listing.
   */
  ordersIndex: 'orders:index',
  /**
   * sorted set: the ids of the orders of one sku, scored like `ordersIndex`. A sku may hold `:`,
   * but `orders:by-sku:` prefixes nothing else, so one sku names one set.
   */
  ordersBySku: (sku: string) => `orders:by-sku:${sku}`,
  /** sorted set: the ids of the orders whose recorded status is `status`, scored like `ordersIndex`; the scripts move an id between them. */
  ordersByStatus: (status: OrderStatus) => `orders:by-status:${status}`,
  /**
   * string (JSON {"at","status","url"}): set when the webhook endpoint answered 410 Gone; while it
   * exists every notifier sends nothing to that endpoint (docs/webhooks.md). Keyed by the first 16
   * hex digits of the SHA-256 of the endpoint URL, so a new NOTIFY_WEBHOOK_URL starts clean.
   * Never expires: an operator deletes it once the endpoint is back.
   */
  webhookGone: (urlHash: string) => `webhook:gone:${urlHash}`,
  /** list: ids of the newest accepted orders, newest first, capped at 50 (accept-n.lua); the dashboard's recent orders. */
  recentOrders: 'orders:recent',
  /**
   * string integer: one caller's requests in its current rate-limit window (rate-limit-1.lua),
   * expiring with the window. `caller` is `sub:<token subject>` or `ip:<client address>`;
   * `ratelimit:` prefixes nothing else.
   */
  rateLimit: (caller: string) => `ratelimit:${caller}`,
  /** string integer: orders whose stock was reserved. */
  processedCount: 'orders.processed.count',
  /**
   * string integer, bumped before each WAIT (scripts/replication.ts): the WAIT then covers every
   * write the script saw, even when the script itself wrote nothing (a decision found made).
   */
  replicationMark: 'replication:mark',
  // Counters behind the dashboard; each is bumped inside the Lua script that makes the change,
  // so it counts every order once however often a message is redelivered.
  stats: {
    accepted: 'stats:orders:accepted',
    duplicates: 'stats:orders:duplicates',
    rejected: 'stats:orders:rejected',
    /** orders cancelled (cancel-9.lua), whether or not their stock had been reserved. */
    cancelled: 'stats:orders:cancelled',
    notificationsSent: 'stats:notifications:sent',
    notificationsFailed: 'stats:notifications:failed',
  },
} as const;
