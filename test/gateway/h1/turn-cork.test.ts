import { once } from 'node:events';
import net from 'node:net';
import { afterEach, expect, test } from '@jest/globals';
import { TurnCork } from '../../../gateway/h1/turn-cork.ts';

const open: net.Socket[] = [];
const servers: net.Server[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

/** a connected client socket whose writes are counted (node calls _writev once for what a cork held) */
async function countedSocket(writableHighWaterMark = 16 * 1024): Promise<{
  socket: net.Socket;
  writes: () => number;
  received: () => number;
}> {
  let received = 0;
  const server = net.createServer((s) => {
    open.push(s);
    s.on('data', (d: Buffer) => (received += d.length));
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  // node's Duplex takes the option; the net typings leave it out
  const socket = net.connect({ port, host: '127.0.0.1', writableHighWaterMark } as net.NetConnectOpts);
  open.push(socket);
  await once(socket, 'connect');
  let writes = 0;
  const s = socket as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
  const write = s._write.bind(s);
  const writev = s._writev.bind(s);
  s._write = (...a) => {
    writes++;
    write(...a);
  };
  s._writev = (...a) => {
    writes++;
    writev(...a);
  };
  return { socket, writes: () => writes, received: () => received };
}

async function until(what: string, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

test('the pieces written in one turn leave in one write when released', async () => {
  const { socket, writes, received } = await countedSocket();
  const cork = new TurnCork(socket);
  for (let i = 0; i < 4; i++) {
    cork.hold();
    expect(socket.write(Buffer.alloc(1024, i))).toBe(true);
  }
  expect(writes()).toBe(0);
  expect(cork.release()).toBe(true);
  expect(writes()).toBe(1);
  await until('4 KiB at the server', () => received() === 4096);
});

test('what is held leaves at the end of the turn without a release (a body that trickles in)', async () => {
  const { socket, writes, received } = await countedSocket();
  const cork = new TurnCork(socket);
  cork.hold();
  socket.write(Buffer.alloc(100));
  cork.hold();
  socket.write(Buffer.alloc(100));
  expect(writes()).toBe(0);
  await new Promise((r) => setImmediate(r));
  expect(writes()).toBe(1);
  await until('200 bytes at the server', () => received() === 200);
  // a later hold is a new one, released at the end of its own turn
  cork.hold();
  socket.write(Buffer.alloc(50));
  expect(writes()).toBe(1);
  await until('250 bytes at the server', () => received() === 250);
  expect(writes()).toBe(2);
});

test('a write past the high-water mark is judged after the release: what the kernel took does not wait for drain', async () => {
  const { socket, received } = await countedSocket(1024);
  const cork = new TurnCork(socket);
  cork.hold();
  expect(socket.write(Buffer.alloc(600))).toBe(true);
  // held, the buffer passes the mark and the write says wait
  expect(socket.write(Buffer.alloc(600))).toBe(false);
  // released, a loopback socket takes 1,200 bytes at once, so the writer need not wait for 'drain'
  expect(cork.release()).toBe(true);
  expect(socket.writableLength).toBe(0);
  await until('the pieces at the server', () => received() === 1200);
});

test('release without a hold, and on a destroyed socket, changes nothing', async () => {
  const { socket, writes } = await countedSocket();
  const cork = new TurnCork(socket);
  expect(cork.release()).toBe(true);
  expect(socket.writableCorked).toBe(0);
  socket.destroy();
  cork.hold();
  expect(socket.writableCorked).toBe(0);
  expect(cork.release()).toBe(true);
  expect(writes()).toBe(0);
});
