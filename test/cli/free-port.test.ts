import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { freePort, tryBind } from '../../cli/demo/free-port.ts';

// The demo's and the daemon tests' gateways get their listener ports from freePort, which tries random
// ports: one already taken must be passed over, never fail the caller with EADDRINUSE.

test('a taken port is reported as taken (undefined), not thrown', async () => {
  const holder = createServer();
  holder.listen(0, '127.0.0.1');
  await once(holder, 'listening');
  try {
    const taken = (holder.address() as AddressInfo).port;
    await expect(tryBind(taken)).resolves.toBeUndefined();
  } finally {
    holder.close();
  }
});

test('a free port is bound, released and returned', async () => {
  const port = await freePort();
  expect(port).toBeGreaterThan(0);
  // released: it can be bound again at once
  await expect(tryBind(port)).resolves.toBe(port);
});
