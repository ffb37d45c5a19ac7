import { EventEmitter } from 'node:events';
import type { Http2Session } from 'node:http2';
import { afterEach, beforeEach, expect, jest, test } from '@jest/globals';
import { LeafCycle } from '../../gateway/leaf-cycle.ts';
import { CLOSE_GRACE_MS } from '../../gateway/peer-revalidation.ts';

// LeafCycle (gateway/leaf-cycle.ts): after our leaf rotates, each east-west HTTP/2 session gets a GOAWAY within
// the spread, and is cut once the leaf it was opened with has expired (plus CLOSE_GRACE_MS) if it is still
// open then, since node may leave a session stuck after its GOAWAY (gateway/session-close.ts). The servers'
// side of a real rotation is in hot-swap.test.ts.

const SPREAD_MS = 1_000;

/** what LeafCycle and goAway use of a session, with what was done to it */
class FakeSession extends EventEmitter {
  closed = false;
  destroyed = false;
  goaways = 0;
  goaway(): void {
    this.goaways++;
  }
  close(): void {
    this.closed = true;
  }
  destroy(): void {
    this.destroyed = true;
    this.emit('close');
  }
  /** the client ended its streams: node closes the session */
  finish(): void {
    this.destroyed = true;
    this.emit('close');
  }
}

let now = 0;
beforeEach(() => {
  jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask', 'setImmediate'] });
  now = Date.now();
});
afterEach(() => {
  jest.useRealTimers();
});

test('a cycled session still open when the leaf it was opened with expires is cut CLOSE_GRACE_MS later', () => {
  let leafNotAfter = now + 60_000;
  const cycle = new LeafCycle(SPREAD_MS, () => leafNotAfter);
  const s = new FakeSession();
  cycle.track(s as unknown as Http2Session);
  leafNotAfter = now + 3_600_000; // the rotated leaf
  cycle.rotated();
  jest.advanceTimersByTime(SPREAD_MS);
  expect(s.goaways).toBe(1);
  expect(s.closed).toBe(true);
  // its streams may finish as long as the old leaf is valid, and the grace after it
  jest.advanceTimersByTime(60_000 + CLOSE_GRACE_MS - SPREAD_MS - 1);
  expect(s.destroyed).toBe(false);
  jest.advanceTimersByTime(SPREAD_MS + 1);
  expect(s.destroyed).toBe(true);
});

test('a cycled session that closes by itself is left alone', () => {
  const cycle = new LeafCycle(SPREAD_MS, () => now + 60_000);
  const s = new FakeSession();
  cycle.track(s as unknown as Http2Session);
  cycle.rotated();
  jest.advanceTimersByTime(SPREAD_MS);
  expect(s.goaways).toBe(1);
  const destroy = jest.spyOn(s, 'destroy');
  s.finish();
  jest.advanceTimersByTime(60_000 + CLOSE_GRACE_MS + SPREAD_MS);
  expect(destroy).not.toHaveBeenCalled();
});

test('a session opened with a leaf that has already expired gets CLOSE_GRACE_MS after its GOAWAY', () => {
  const cycle = new LeafCycle(SPREAD_MS, () => now - 5_000);
  const s = new FakeSession();
  cycle.track(s as unknown as Http2Session);
  cycle.rotated();
  jest.advanceTimersByTime(SPREAD_MS + CLOSE_GRACE_MS + 1);
  expect(s.closed).toBe(true);
  expect(s.destroyed).toBe(true);
});
