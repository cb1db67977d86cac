// The fault tests' own checks: a check that passes whatever happened would make a fault test
// that cannot fail.
import { describe, expect, it } from 'vitest';
import { killProblems, type ObservedKill } from './helpers/chaos.js';

const kill = (
  target: string,
  pid: number,
  restartedPid: number | undefined,
  signal: NodeJS.Signals | null = 'SIGKILL',
  code: number | null = null,
): ObservedKill => ({
  target,
  pid,
  signal,
  code,
  restartedPid,
});

describe('killProblems', () => {
  const plan = { notifier: 2, redis: 1 };
  const [n1, r1, n2] = [kill('notifier', 10, 11), kill('redis', 20, 21), kill('notifier', 11, 12)];
  const good = [n1, r1, n2];
  const now = { notifier: 12, redis: 21 };

  it('finds nothing wrong when every planned kill was a SIGKILL of the running process, each replaced', () => {
    expect(killProblems(plan, good, now)).toEqual([]);
  });

  it.each([
    ['a kill missing', [n1, r1], { notifier: 11, redis: 21 }, /notifier: 1 kills observed, 2 planned/],
    [
      'a process that had exited on its own',
      [n1, kill('redis', 20, 21, null, 1), n2],
      now,
      /redis kill 1 \(pid 20\) ended by exit code 1, not SIGKILL/,
    ],
    ['a process ended by another signal', [n1, kill('redis', 20, 21, 'SIGTERM'), n2], now, /ended by SIGTERM, not SIGKILL/],
    ['no new process', [n1, kill('redis', 20, undefined), n2], { ...now, redis: undefined }, /redis kill 1 \(pid 20\) was not replaced/],
    [
      'a replacement that was not the process killed next',
      [n1, r1, kill('notifier', 99, 12)],
      now,
      /its replacement 11 is not the process the next kill found \(99\)/,
    ],
    [
      'a last replacement no longer running',
      good,
      { notifier: undefined, redis: 21 },
      /notifier: the last replacement 12 is not running now \(none is\)/,
    ],
  ])('reports %s', (_what, kills, running, says) => {
    expect(killProblems(plan, kills, running).join('\n')).toMatch(says);
  });
});
