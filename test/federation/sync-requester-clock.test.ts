import { pino } from 'pino';
import { subjects } from '../../federation/index.ts';
import type { JwsSigner } from '../../federation/jws.ts';
import { SyncRequester } from '../../federation/sync-requester.ts';

// Anti-entropy's waits (one ask per cluster per heartbeat interval, a request's sync timeout) run on the steady
// clock: a wall clock stepped back 50 minutes used to hold every ask back for 50 minutes, and one stepped
// forward expired the requests in flight at once.

const HEARTBEAT = 1_000;
const SYNC_TIMEOUT = 5_000;
const STEP = 50 * 60_000;

function requester(clock: { wall: number; steady: number }) {
  const sent: { subject: string; req: string }[] = [];
  const r = new SyncRequester({
    cluster: 'east',
    subjects: subjects('meshfed'),
    syncTimeout: SYNC_TIMEOUT,
    heartbeatInterval: HEARTBEAT,
    // the signature is not what this test is about: the request goes out as its JSON
    signer: () => ({ sign: (m: unknown) => JSON.stringify(m) }) as unknown as JwsSigner,
    send: (subject, _data, reply) => {
      sent.push({ subject, req: reply.slice('_INBOX.east.'.length) });
      return true;
    },
    log: pino({ level: 'silent' }),
    now: () => clock.wall,
    steady: () => clock.steady,
  });
  r.reset('_INBOX.east');
  return { r, sent };
}

test('the first ask goes out at once, even right after the process started (steady clock near 0)', () => {
  const { r, sent } = requester({ wall: 1_800_000_000_000, steady: 10 });
  r.ask('west');
  expect(sent.map((s) => s.subject)).toEqual(['meshfed.sync.west']);
});

test('a wall clock stepped back does not hold back the next ask', () => {
  const clock = { wall: 1_800_000_000_000, steady: 100_000 };
  const { r, sent } = requester(clock);
  r.ask('west');
  r.done('west', sent[0]!.req);
  // the wall clock is set back 50 minutes, and a heartbeat interval passes
  clock.wall -= STEP;
  clock.steady += HEARTBEAT;
  r.ask('west');
  expect(sent.map((s) => s.subject)).toEqual(['meshfed.sync.west', 'meshfed.sync.west']);
  // within an interval on the steady clock a second mismatch asks nothing
  r.done('west', sent[1]!.req);
  clock.steady += HEARTBEAT / 2;
  r.ask('west');
  expect(sent).toHaveLength(2);
});

test('a wall clock stepped forward does not expire the requests in flight; the steady clock does', () => {
  const clock = { wall: 1_800_000_000_000, steady: 100_000 };
  const { r, sent } = requester(clock);
  r.ask('west');
  const { req } = sent[0]!;
  clock.wall += STEP;
  clock.steady += 100;
  r.expire();
  expect(r.isInFlight('west', req)).toBe(true);
  expect(r.isOpen(req)).toBe(true);
  clock.steady += SYNC_TIMEOUT;
  r.expire();
  expect(r.isInFlight('west', req)).toBe(false);
  expect(r.isOpen(req)).toBe(false);
});
