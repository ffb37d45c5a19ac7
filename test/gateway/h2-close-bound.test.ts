import { EventEmitter, once } from 'node:events';
import http2, { type Http2Session, type ServerHttp2Session } from 'node:http2';
import { jest } from '@jest/globals';
import net, { type AddressInfo } from 'node:net';
import { MAX_TIMER_MS, waitFor } from '../../core/index.ts';
import { H2Pool } from '../../gateway/h2-pool.ts';
import { closeSessionWithin } from '../../gateway/session-close.ts';
import { frame, H2_PREFACE, hpackBlock } from './east-west-inputs-h2.ts';

// closeSessionWithin (gateway/session-close.ts): a graceful close of a server session that always ends, even
// when node leaves the session stuck after its GOAWAY (a frame that breaks the protocol read after it).

/** HEADERS of a POST on stream 1 that ends the stream */
const POST_HEADERS = frame(
  1,
  0x05,
  1,
  hpackBlock([
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'a.b'],
  ]),
);
/** HEADERS on stream 2 (even: a client may not open it), PADDED with a pad length past its payload */
const BROKEN = frame(1, 0x0c, 2, Buffer.from([127]));

/** an h2c server whose every stream is answered after `onStream` ran on its session */
async function server(onStream: (session: ServerHttp2Session) => void) {
  const srv = http2.createServer();
  srv.on('session', (s) => s.on('error', () => undefined));
  srv.on('stream', (stream) => {
    stream.on('error', () => undefined);
    onStream(stream.session as ServerHttp2Session);
    if (!stream.destroyed) stream.respond({ ':status': 403, 'content-length': '2' });
    if (!stream.destroyed) stream.end('no');
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as AddressInfo).port;
  const connections = () =>
    new Promise<number>((resolve, reject) => srv.getConnections((e, n) => (e ? reject(e) : resolve(n))));
  return { srv, port, connections };
}

/** a raw client: the preface, SETTINGS, then `frames` in one write; gone (destroyed) after `holdMs` */
async function rawClient(port: number, frames: Buffer[], holdMs: number): Promise<void> {
  const c = net.connect(port, '127.0.0.1');
  c.on('error', () => undefined);
  await once(c, 'connect');
  c.write(Buffer.concat([H2_PREFACE, frame(4, 0, 0, Buffer.alloc(0)), ...frames]));
  c.resume();
  await new Promise((r) => setTimeout(r, holdMs));
  c.destroy();
}

test('a session closed gracefully, then sent a frame that breaks HTTP/2, is cut within the bound', async () => {
  const graceMs = 300;
  const s = await server((session) => closeSessionWithin(session, graceMs));
  try {
    await rawClient(s.port, [POST_HEADERS, BROKEN], 100);
    // node alone keeps this connection for the life of the process (with session.close() in place of
    // closeSessionWithin, this wait times out): the bound lets it go
    const gone = await waitFor(async () => ((await s.connections()) === 0 ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 20,
      what: 'the server to let the connection go',
    });
    expect(gone).toBe(true);
  } finally {
    s.srv.close();
  }
});

test('a session whose streams end closes at once, without waiting for the bound', async () => {
  let session: ServerHttp2Session | undefined;
  const s = await server((x) => {
    session = x;
    closeSessionWithin(x, 60_000);
  });
  try {
    const client = http2.connect(`http://127.0.0.1:${s.port}`);
    client.on('error', () => undefined);
    const req = client.request({ ':method': 'GET', ':path': '/' });
    req.on('error', () => undefined);
    req.resume();
    await once(req, 'close');
    await waitFor(async () => (session?.closed && session.destroyed ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 20,
      what: 'the session to close after its one stream',
    });
    client.close();
  } finally {
    s.srv.close();
  }
});

test("a bound past setTimeout's limit (a leaf valid for 40 days) is armed at the limit, not fired at once", () => {
  // node fires a timer longer than 2^31 - 1 ms after 1 ms: unclamped, such a bound would cut at once
  const session = Object.assign(new EventEmitter(), { closed: false, destroyed: false, close() {} });
  const timers = jest.spyOn(globalThis, 'setTimeout');
  try {
    closeSessionWithin(session as unknown as Http2Session, 40 * 24 * 3_600_000);
    const delay = timers.mock.calls.at(-1)?.[1];
    expect(delay).toBe(MAX_TIMER_MS);
  } finally {
    timers.mockRestore();
    session.emit('close');
  }
});

/**
 * A raw HTTP/2 server (SETTINGS on accept, reads everything) that the client sessions under test dial.
 * `breakAfterGoaway` answers the client's SETTINGS, sends HEADERS on an even stream padded past its
 * payload, and hangs up: what a remote gateway that breaks the protocol after our GOAWAY does.
 */
async function rawPeer() {
  let peer: net.Socket | undefined;
  const raw = net.createServer((s) => {
    peer = s;
    s.on('error', () => undefined);
    s.resume();
    s.write(frame(4, 0, 0, Buffer.alloc(0)));
  });
  raw.listen(0, '127.0.0.1');
  await once(raw, 'listening');
  return {
    address: `127.0.0.1:${(raw.address() as AddressInfo).port}`,
    breakAfterGoaway() {
      peer!.write(Buffer.concat([frame(4, 1, 0, Buffer.alloc(0)), BROKEN]));
      peer!.destroy();
    },
    close: () => raw.close(),
  };
}

/** resolves true once `session` is destroyed (within 5 s) */
function cut(session: Http2Session): Promise<boolean | undefined> {
  return waitFor(() => (session.destroyed ? true : undefined), {
    timeoutMs: 5_000,
    intervalMs: 20,
    what: 'the client session to be cut',
  });
}

test('a client session closed gracefully, then sent a frame that breaks HTTP/2, is cut within the bound', async () => {
  // the tunnel pool's side (gateway/h2-pool.ts): a remote gateway that breaks the protocol after our GOAWAY
  const raw = await rawPeer();
  const client = http2.connect(`http://${raw.address}`);
  client.on('error', () => undefined);
  try {
    await once(client, 'connect');
    client.request({ ':path': '/' }).on('error', () => undefined);
    closeSessionWithin(client, 300);
    raw.breakAfterGoaway();
    expect(await cut(client)).toBe(true);
  } finally {
    client.destroy();
    raw.close();
  }
});

test('the tunnel pool stopping cuts a session the peer leaves stuck after its GOAWAY', async () => {
  // H2Pool.close() (the gateway's stop): before the bound, such a session kept its socket, and with it the
  // stopped gateway's process, alive for ever
  const raw = await rawPeer();
  const pool = new H2Pool({ size: 1, connectTimeoutMs: 5_000 });
  try {
    const session = await pool.session(raw.address);
    session.request({ ':path': '/' }).on('error', () => undefined);
    pool.close(300);
    raw.breakAfterGoaway();
    expect(await cut(session)).toBe(true);
  } finally {
    pool.close(0);
    raw.close();
  }
});
