// The order a broker connection walks RABBITMQ_URLS: its first node and where each failover goes.
import { describe, expect, it } from 'vitest';
import { nodeOrder } from '@order-pipeline/shared';
import { seededRandom } from '../../test/helpers/chaos.js';

const URLS = ['amqp://a', 'amqp://b', 'amqp://c'];

describe('nodeOrder', () => {
  it('keeps the list as given when listed', () => {
    expect(nodeOrder(URLS, 'listed')).toEqual(URLS);
  });

  it('gives each connection the whole list, in its own order, starting about evenly at every node', () => {
    const random = seededRandom(15);
    const firsts = new Map<string, number>();
    const orders = new Set<string>();
    for (let i = 0; i < 600; i++) {
      const order = nodeOrder(URLS, 'random', random);
      // Every node is still tried: a failover walks through the whole cluster.
      expect([...order].sort()).toEqual(URLS);
      firsts.set(order[0] as string, (firsts.get(order[0] as string) ?? 0) + 1);
      orders.add(order.join(' '));
    }
    // 200 expected at each; a fair shuffle lands within ±60 of it (over 5 standard deviations).
    for (const url of URLS) expect(firsts.get(url) ?? 0, url).toBeGreaterThan(140);
    for (const url of URLS) expect(firsts.get(url) ?? 0, url).toBeLessThan(260);
    // All six orders occur, so the clients of a lost node go on to different nodes.
    expect(orders.size).toBe(6);
  });

  it('does not change the list it was given', () => {
    const urls = [...URLS];
    nodeOrder(urls, 'random', () => 0);
    expect(urls).toEqual(URLS);
  });
});
