// Every Redis key of the product, in one place. Nothing else concatenates key names.

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
  /** list: ids of the newest accepted orders, newest first, capped at 50 (accept-n.lua); the dashboard's recent orders. */
  recentOrders: 'orders:recent',
  /** string integer: orders whose stock was reserved. */
  processedCount: 'orders.processed.count',
  // Counters behind the dashboard; each is bumped inside the Lua script that makes the change,
  // so it counts every order once however often a message is redelivered.
  stats: {
    accepted: 'stats:orders:accepted',
    duplicates: 'stats:orders:duplicates',
    rejected: 'stats:orders:rejected',
    /** orders cancelled (cancel-3.lua), whether or not their stock had been reserved. */
    cancelled: 'stats:orders:cancelled',
    notificationsSent: 'stats:notifications:sent',
    notificationsFailed: 'stats:notifications:failed',
  },
} as const;
