import { once } from 'node:events';
import http2 from 'node:http2';
import { widenConnectionWindow } from '../../gateway/h2-pool.ts';

// Found by the chaos suite (rolling restart): a tunnel session destroyed before its 'connect' listener
// ran made setLocalWindowSize throw ERR_HTTP2_INVALID_SESSION there, which ended the gateway process.
test('a tunnel session destroyed before it is set up is refused, not thrown on', async () => {
  const server = http2.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const session = http2.connect(`http://127.0.0.1:${port}`);
  await once(session, 'connect');
  session.destroy();
  expect(() => widenConnectionWindow(session)).not.toThrow();
  expect(widenConnectionWindow(session)).toBe(false);
  server.close();
});

test('a live tunnel session gets the wide connection window', async () => {
  const server = http2.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const session = http2.connect(`http://127.0.0.1:${port}`);
  await once(session, 'connect');
  expect(widenConnectionWindow(session)).toBe(true);
  expect(session.state.localWindowSize).toBeGreaterThan(1 << 20);
  session.close();
  server.close();
});
