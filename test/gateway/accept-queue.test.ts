// meshfed_listener_accept_queue: connections the kernel completed for a listener that the gateway has not
// accepted yet. The chaos flood's TCP port held hundreds of them (connected, never answered) and counted
// nothing anywhere; this gauge is where an operator sees a gateway falling behind on accepting.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { endianness } from 'node:os';
import { createInterface } from 'node:readline';
import { waitFor } from '../../core/index.ts';
import { createRegistry } from '../../core/metrics.ts';
import { acceptQueueGauge, acceptQueues, procAddress } from '../../gateway/accept-queue.ts';
import { gatewayConfigSchema } from '../../gateway/config.ts';
import { Listeners } from '../../gateway/listeners.ts';
import { Counter } from '../../core/metrics.ts';

const onLinux = process.platform === 'linux' ? test : test.skip;
const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

test('addresses are written as /proc/net/tcp and tcp6 write them', () => {
  const le = endianness() === 'LE';
  expect(procAddress('127.0.0.1:8080')).toBe(le ? '0100007F:1F90' : '7F000001:1F90');
  expect(procAddress('0.0.0.0:443')).toBe('00000000:01BB');
  expect(procAddress('[::1]:443')).toBe(
    le ? '00000000000000000000000001000000:01BB' : '00000000000000000000000000000001:01BB',
  );
  expect(procAddress('[fe80::1:2]:1')).toBe(
    le ? '000080FE000000000000000002000100:0001' : 'FE800000000000000000000000010002:0001',
  );
  expect(procAddress('localhost:80')).toBeUndefined();
  expect(procAddress('[::ffff:1.2.3.4]:80')).toBeUndefined();
});

test('the queue of every LISTEN socket of a listener is summed; other sockets and states are not counted', () => {
  const text = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000  1000        0 1 1',
    '   1: 0100007F:1F90 00000000:0000 0A 00000000:0000000A 00:00000000 00000000  1000        0 2 1',
    '   2: 0100007F:1F90 0100007F:C350 01 00000000:00000040 00:00000000 00000000  1000        0 3 1',
    '   3: 0100007F:1F91 00000000:0000 0A 00000000:00000007 00:00000000 00000000  1000        0 4 1',
    '   4: 0100007F:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5 1',
  ].join('\n');
  const got = acceptQueues(
    text,
    new Map([
      ['0100007F:1F90', 'tcp:echo.chaos'],
      ['0100007F:1F92', 'egress'],
      ['0100007F:1F93', 'eastWest'],
    ]),
  );
  expect(Object.fromEntries(got)).toEqual({ 'tcp:echo.chaos': 13, egress: 0 });
});

/** a process that listens on 127.0.0.1 and then stops itself: the kernel queues connections nobody accepts */
async function stoppedListener(): Promise<{ child: ChildProcess; address: string }> {
  const script =
    "const s=require('net').createServer((c)=>c.destroy());s.listen(0,'127.0.0.1',()=>{" +
    "process.stdout.write(s.address().port+'\\n');process.kill(process.pid,'SIGSTOP')})";
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  closers.push(() => {
    child.kill('SIGKILL');
  });
  const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
  // stopped indeed (state T), not only about to be: a SIGCONT sent before its SIGSTOP would be lost
  const state = () => readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.[0];
  await waitFor(() => state() === 'T', { timeoutMs: 10_000, what: 'the listener process stopped' });
  return { child, address: `127.0.0.1:${line.trim()}` };
}

onLinux('connections waiting for an accept are reported per listener, and 0 once accepted', async () => {
  const { child, address } = await stoppedListener();
  const registry = createRegistry();
  const gauge = acceptQueueGauge(registry, () => ({ 'tcp:echo.chaos': address }));
  const value = async () =>
    (await gauge.get()).values.find((v) => v.labels.listener === 'tcp:echo.chaos')?.value;
  const [host, port] = [address.split(':')[0]!, Number(address.split(':')[1])];
  const clients = Array.from({ length: 5 }, () => {
    const c = net.connect(port, host);
    c.on('error', () => undefined);
    return c;
  });
  closers.push(() => {
    for (const c of clients) c.destroy();
  });
  // connected: the kernel completed each handshake, while the listening process runs nothing at all
  await Promise.all(clients.map((c) => once(c, 'connect')));
  await waitFor(async () => (await value()) === 5, { timeoutMs: 5_000, what: 'five connections queued' });
  child.kill('SIGCONT');
  await waitFor(async () => (await value()) === 0, { timeoutMs: 10_000, what: 'the queue drained' });
});

onLinux("a gateway's listeners report their queue through the registry they are given", async () => {
  const registry = createRegistry();
  const refused = new Counter({
    name: 'r_total',
    help: 'r',
    labelNames: ['listener', 'reason'],
    registers: [],
  });
  const limits = gatewayConfigSchema.parse({
    listeners: { eastWest: '127.0.0.1:0', egress: '127.0.0.1:0' },
  }).limits;
  const l = new Listeners({ limits, trustedNetworks: [], refused, reusePort: false, registry });
  closers.push(() => Promise.all(l.servers.map((s) => new Promise((r) => s.close(r)))));
  await l.bind(() => net.createServer(), { host: '127.0.0.1', port: 0 }, 'tcp:echo.chaos');
  const text = await registry.metrics();
  expect(text).toContain('meshfed_listener_accept_queue{listener="tcp:echo.chaos"} 0');
});
