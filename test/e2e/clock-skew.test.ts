import { type CaMaterial, createRoot, issueIntermediate } from '../../ca/index.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { waitFor } from '../../core/index.ts';
import { type GatewayProcess, startGatewayProcess } from '../gateway/daemon-process.ts';
import { echoServer, request } from '../gateway/harness.ts';
import { skewedClockEnv, skewedClockMissing } from '../helpers/skewed-clock.ts';

// Gateway processes whose wall clocks are off the way a host's clock is (libfaketime: Date and OpenSSL's
// certificate checks moved, monotonic clock untouched). Within federation.maxClockSkew they must route and be
// routed to, in both directions; beyond it a gateway refuses their catalog, counts it and logs a line that
// names the skew and the fix.

const FOUR_MIN = 4 * 60_000;
const missing = skewedClockMissing();

/** federation settings of the helper's config, with `extra` */
function federation(natsUrl: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    federation: { nats: { servers: [natsUrl] }, heartbeatInterval: '1s', staleAfter: '5s', ...extra },
  };
}

/** every request of a run of at least `ms` (and at most `max` requests) from `from` to `host` answered 200 */
async function steadily(from: GatewayProcess, host: string, ms: number, max = 200): Promise<number[]> {
  const statuses: number[] = [];
  const until = performance.now() + ms;
  while (performance.now() < until && statuses.length < max) {
    statuses.push((await request(from.egress, { host }).catch(() => ({ status: 0 }))).status);
  }
  return statuses;
}

(missing ? describe.skip : describe)(`clock skew between clusters${missing ? ` (${missing})` : ''}`, () => {
  let nats: NatsServerProcess;
  let root: CaMaterial;
  const gateways: GatewayProcess[] = [];
  const backends: Awaited<ReturnType<typeof echoServer>>[] = [];
  let ahead: GatewayProcess;
  let behind: GatewayProcess;

  beforeAll(async () => {
    nats = await startNatsServer({ name: 'clock-skew' });
    root = await createRoot({ trustDomain: 'mesh.example' });
    backends.push(await echoServer('east-api'), await echoServer('west-web'));
    // 8 min apart, each 4 min off the real time; leaves live 1 h (the helper's leafTtl)
    const start = async (cluster: string, service: string, address: string, offsetMs: number) => {
      const g = await startGatewayProcess({
        natsUrl: nats.url,
        cluster,
        services: { [service]: address },
        root,
        intermediate: await issueIntermediate(root, { cluster }),
        config: federation(nats.url, { maxClockSkew: '10m' }),
        env: skewedClockEnv(offsetMs),
      });
      gateways.push(g);
      return g;
    };
    [ahead, behind] = await Promise.all([
      start('east', 'api', backends[0]!.address, FOUR_MIN),
      start('west', 'web', backends[1]!.address, -FOUR_MIN),
    ]);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    for (const b of backends) b.server.close();
    await nats?.stop();
  });

  test('regression: gateways 4 min ahead and 4 min behind (maxClockSkew 10m, 1 h leaves) route to each other both ways, and keep doing so', async () => {
    const web = 'web.shop.svc.clusterset.local';
    const api = 'api.shop.svc.clusterset.local';
    // a leaf backdated less than the skew between two clusters failed every TLS handshake between them
    await waitFor(
      async () => {
        const [a, b] = await Promise.all([
          request(ahead.egress, { host: web }),
          request(behind.egress, { host: api }),
        ]);
        return a.status === 200 && b.status === 200;
      },
      { timeoutMs: 30_000, intervalMs: 200, what: 'east (+4 min) and west (−4 min) to reach each other' },
    );
    // the entries of a cluster whose clock runs behind were dropped at their expiry by our clock, without
    // the allowance the verifier gave them, within a second of every republish
    const [toWest, toEast] = await Promise.all([steadily(ahead, web, 3000), steadily(behind, api, 3000)]);
    expect(toWest.filter((s) => s !== 200)).toEqual([]);
    expect(toEast.filter((s) => s !== 200)).toEqual([]);
    expect(toWest.length).toBeGreaterThan(5);
  }, 90_000);

  test('beyond the allowed skew (the default 30 s): a gateway on the real clock refuses both, counts it and logs the skew and the fix', async () => {
    const judge = await startGatewayProcess({
      natsUrl: nats.url,
      cluster: 'eu',
      services: {},
      root,
      intermediate: await issueIntermediate(root, { cluster: 'eu' }),
      config: federation(nats.url),
    });
    gateways.push(judge);
    const metric = async (reason: string) => {
      const text = (await request(judge.admin, { host: judge.admin, path: '/metrics' })).body;
      const line = text
        .split('\n')
        .find((l) => l.startsWith(`meshfed_catalog_rejected_total{reason="${reason}"}`));
      return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
    };
    await waitFor(async () => (await metric('issued_in_future')) > 0 && (await metric('expired')) > 0, {
      timeoutMs: 30_000,
      intervalMs: 200,
      what: "eu to refuse east's catalog as issued in the future and west's as expired",
    });
    const lines = judge
      .output()
      .split('\n')
      .filter((l) => l.includes('catalog message rejected'));
    const ahead4 = lines.find((l) => l.includes('cluster/east/') && l.includes('issued_in_future'));
    expect(ahead4).toMatch(/about 4 min ahead/);
    expect(ahead4).toMatch(/NTP/);
    expect(ahead4).toMatch(/federation\.maxClockSkew/);
    const behind4 = lines.find((l) => l.includes('cluster/west/') && l.includes('"expired"'));
    expect(behind4).toMatch(/about 4 min behind/);
    expect(behind4).toMatch(/NTP/);
    // and nothing of theirs is routed to
    expect((await request(judge.egress, { host: 'api.shop.svc.clusterset.local' })).status).toBe(503);
    expect((await request(judge.egress, { host: 'web.shop.svc.clusterset.local' })).status).toBe(503);
  }, 90_000);
});
