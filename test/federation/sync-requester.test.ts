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

/** `link.up` false: the connection is gone and every send fails, as CatalogOutbox.send does then */
function requester(clock: { wall: number; steady: number }, link = { up: true }) {
  const sent: { subject: string; req: string }[] = [];
  const r = new SyncRequester({
    cluster: 'east',
    subjects: subjects('meshfed'),
    syncTimeout: SYNC_TIMEOUT,
    heartbeatInterval: HEARTBEAT,
    // the signature is not what this test is about: the request goes out as its JSON
    signer: () => ({ sign: (m: unknown) => JSON.stringify(m) }) as unknown as JwsSigner,
    send: (subject, _data, reply) => {
      if (!link.up) return false;
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

// The queue: at most eight snapshots are in flight; the rest wait. A new connection (reset) takes the requests
// in flight with it, and used to leave the waiting ones queued for good: an ask for a queued cluster returned at
// once and only an answer (done) pumped the queue, so those clusters were never synced again.

const peers = (n: number) => Array.from({ length: n }, (_, i) => `c${i}`);

test('clusters waiting behind the eight in flight go out when a new connection resets the requester', () => {
  const clock = { wall: 1_800_000_000_000, steady: 100_000 };
  const { r, sent } = requester(clock);
  for (const c of peers(10)) r.ask(c);
  expect(sent).toHaveLength(8);
  // the connection drops and comes back before any answer: the two waiting are asked on the new one
  r.reset('_INBOX.east');
  expect(sent.slice(8).map((s) => s.subject)).toEqual(['meshfed.sync.c8', 'meshfed.sync.c9']);
});

test('a waiting ask whose send failed while disconnected goes out on the next connection', () => {
  const clock = { wall: 1_800_000_000_000, steady: 100_000 };
  const link = { up: true };
  const { r, sent } = requester(clock, link);
  for (const c of peers(9)) r.ask(c);
  expect(sent).toHaveLength(8);
  // no answer comes; the connection is gone when the eight expire, so the slot they free cannot send c8
  link.up = false;
  clock.steady += SYNC_TIMEOUT + 1;
  r.expire();
  expect(sent).toHaveLength(8);
  link.up = true;
  r.reset('_INBOX.east');
  expect(sent.slice(8).map((s) => s.subject)).toEqual(['meshfed.sync.c8']);
});

test('a later ask for a cluster whose queued send failed tries it again', () => {
  const clock = { wall: 1_800_000_000_000, steady: 100_000 };
  const link = { up: false };
  const { r, sent } = requester(clock, link);
  r.ask('west');
  expect(sent).toHaveLength(0);
  link.up = true;
  r.ask('west');
  expect(sent.map((s) => s.subject)).toEqual(['meshfed.sync.west']);
  expect(r.isInFlight('west', sent[0]!.req)).toBe(true);
});
