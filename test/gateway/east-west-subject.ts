import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { stringify } from 'yaml';
import {
  createRoot,
  type IssuedLeaf,
  issueIntermediate,
  issueLeaf,
  parseCertificates,
} from '../../ca/index.ts';
import { freePort } from '../../cli/demo/free-port.ts';
import { waitFor } from '../../core/index.ts';
import { TUNNEL_ALPN } from '../../gateway/config.ts';
import { echoServer, request } from './harness.ts';
import { answeredBy } from './daemon-process.ts';

// A real `meshfed gateway` daemon (cluster east, single process) whose east-west listener the
// fuzz tests attack. A crash must show as the child process exiting: the gateway never runs
// inside the jest worker. When an input kills it, the same config (same CA directory, same ports)
// is started again, so fast-check can go on judging (and shrinking) inputs against a live gateway.

const BIN = join(process.cwd(), 'bin', 'meshfed.js');

/** One recorded death of the gateway process, with what it printed last. */
export interface Death {
  /** the input that was being sent when the process was seen dead */
  input: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** the end of the process's output: the stack of the error that killed it */
  tail: string;
}

/** Certificates a client of the east-west listener can present. */
export interface Identities {
  /** a gateway of cluster west (same root; west's intermediate is in the daemon's bundle) */
  westGateway: IssuedLeaf;
  /** a workload of cluster west: chains to the root but is not a gateway */
  westWorkload: IssuedLeaf;
  /** a workload of the gateway's own cluster */
  eastWorkload: IssuedLeaf;
  /** a gateway certificate of another root, which the gateway does not trust */
  foreignGateway: IssuedLeaf;
  /** the root every gateway trusts */
  rootPem: string;
  /** west's intermediate (DER, base64): what a real peer sends as x-meshfed-chain */
  westChainB64: string;
}

function timeout(ms: number): { promise: Promise<'timeout'>; clear(): void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  return { promise, clear: () => clearTimeout(timer) };
}

export class GatewayUnderTest {
  readonly deaths: Death[] = [];
  /** what the current input is, for the death record */
  current = '';
  private child: ChildProcess | undefined;
  private out = '';
  private exited: Promise<void> = Promise.resolve();

  private readonly gw: { dir: string; config: string; eastWest: string; egress: string; admin: string };
  readonly ids: Identities;
  private readonly backends: { close(): void };

  private constructor(gw: GatewayUnderTest['gw'], ids: Identities, backends: { close(): void }) {
    this.gw = gw;
    this.ids = ids;
    this.backends = backends;
  }

  /**
   * A daemon of cluster east with its own CA directory (root → east intermediate), federating over
   * `natsUrl`. Exported services of namespace shop: web (http), db (tcp), vault (tls, passed
   * through), api (http + tcp + tls); secret (http) is not exported.
   */
  static async start(natsUrl: string): Promise<GatewayUnderTest> {
    const web = await echoServer('east-web');
    // a TCP echo server stands behind the tcp and tls ports (passthrough only pipes bytes)
    const echo = net.createServer((s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
    const echoPort = (echo.address() as AddressInfo).port;
    const webPort = Number(web.address.slice(web.address.lastIndexOf(':') + 1));
    const endpoint = (ports: Record<string, number>) => [{ host: '127.0.0.1', ports, healthy: true }];
    const dir = mkdtempSync(join(tmpdir(), 'meshfed-fuzz-'));
    writeFileSync(
      join(dir, 'services.yaml'),
      stringify({
        services: [
          {
            namespace: 'shop',
            name: 'web',
            exported: true,
            ports: [{ name: 'http', port: 80, protocol: 'http' }],
            endpoints: endpoint({ http: webPort }),
          },
          {
            namespace: 'shop',
            name: 'db',
            exported: true,
            ports: [{ name: 'tcp', port: 5432, protocol: 'tcp' }],
            endpoints: endpoint({ tcp: echoPort }),
          },
          {
            namespace: 'shop',
            name: 'vault',
            exported: true,
            ports: [{ name: 'tls', port: 8443, protocol: 'tls' }],
            endpoints: endpoint({ tls: echoPort }),
          },
          {
            namespace: 'shop',
            name: 'api',
            exported: true,
            ports: [
              { name: 'http', port: 8080, protocol: 'http' },
              { name: 'tcp', port: 9000, protocol: 'tcp' },
              { name: 'tls', port: 9443, protocol: 'tls' },
            ],
            endpoints: endpoint({ http: webPort, tcp: echoPort, tls: echoPort }),
          },
          {
            namespace: 'shop',
            name: 'secret',
            exported: false,
            ports: [{ name: 'http', port: 80, protocol: 'http' }],
            endpoints: endpoint({ http: webPort }),
          },
        ],
      }),
    );
    const root = await createRoot({ trustDomain: 'mesh.example' });
    const east = await issueIntermediate(root, { cluster: 'east' });
    const west = await issueIntermediate(root, { cluster: 'west' });
    const foreignRoot = await createRoot({ trustDomain: 'mesh.example' });
    const foreign = await issueIntermediate(foreignRoot, { cluster: 'west' });
    const caDir = join(dir, 'ca');
    mkdirSync(caDir, { mode: 0o700 });
    writeFileSync(join(caDir, 'ca.crt'), east.chainPem);
    writeFileSync(join(caDir, 'ca.key'), east.keyPem, { mode: 0o600 });
    writeFileSync(join(caDir, 'bundle.crt'), root.certPem);
    // node's TLS server sees only a third-party client's leaf: west's intermediate completes its chain
    writeFileSync(join(dir, 'intermediates.pem'), west.certPem);
    const [eastWest, egress, admin] = [await freePort(), await freePort(), await freePort()];
    const config = {
      cluster: 'east',
      trustDomain: 'mesh.example',
      name: 'east-gw',
      locality: { region: 'r1', zone: 'z1' },
      stateDir: 'state',
      identity: { caDir: 'ca', leafTtl: '1h', intermediates: 'intermediates.pem' },
      drainTimeout: '2s',
      gateway: {
        listeners: {
          eastWest: `127.0.0.1:${eastWest}`,
          egress: `127.0.0.1:${egress}`,
          admin: `127.0.0.1:${admin}`,
        },
        // short guards: a connection the fuzzer leaves half-open is the gateway's to close, soon
        // the fuzzer and the checks after it dial from the same address: a per-source share of handshakes
        // would throttle the checks with the fuzzer (the listener-wide limits stay at their defaults)
        limits: {
          helloTimeout: '2s',
          headersTimeout: '2s',
          maxHandshakesPerSource: 100,
          handshakesPerSecondPerSource: 200,
        },
      },
      federation: { nats: { servers: [natsUrl] }, heartbeatInterval: '1s', staleAfter: '5s' },
      discovery: { sources: [{ type: 'static', file: 'services.yaml' }] },
      observability: { logLevel: 'warn' },
    };
    const configFile = join(dir, 'gateway.yaml');
    writeFileSync(configFile, stringify(config));
    const ids: Identities = {
      westGateway: await issueLeaf(west, { kind: 'gateway', name: 'west-gw' }),
      westWorkload: await issueLeaf(west, { kind: 'workload', namespace: 'shop', serviceAccount: 'client' }),
      eastWorkload: await issueLeaf(east, { kind: 'workload', namespace: 'shop', serviceAccount: 'client' }),
      foreignGateway: await issueLeaf(foreign, { kind: 'gateway', name: 'west-gw' }),
      rootPem: root.certPem,
      westChainB64: parseCertificates(west.certPem, 'west intermediate')
        .map((c) => c.raw.toString('base64'))
        .join(','),
    };
    const subject = new GatewayUnderTest(
      {
        dir,
        config: configFile,
        eastWest: `127.0.0.1:${eastWest}`,
        egress: `127.0.0.1:${egress}`,
        admin: `127.0.0.1:${admin}`,
      },
      ids,
      {
        close() {
          web.server.closeAllConnections();
          web.server.close();
          echo.close();
        },
      },
    );
    await subject.ensureRunning();
    return subject;
  }

  get eastWest(): string {
    return this.gw.eastWest;
  }
  get egress(): string {
    return this.gw.egress;
  }
  get pid(): number | undefined {
    return this.child?.pid;
  }

  private watch(child: ChildProcess): Promise<void> {
    this.out = '';
    child.stdout?.on('data', (d: Buffer) => {
      this.out = (this.out + d.toString()).slice(-20_000);
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.out = (this.out + d.toString()).slice(-20_000);
    });
    return new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
  }

  dead(): boolean {
    return !this.child || this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /**
   * undefined while the process lives and its admin listener answers /healthz; else why not. A
   * crash caused by the last input happens before the gateway reads any later socket, so an
   * answered probe also says that input did not kill it.
   */
  async checkAlive(): Promise<string | undefined> {
    const t = timeout(5_000);
    const probe = request(this.gw.admin, { host: this.gw.admin, path: '/healthz' }).then(
      (r) => r.status === 200,
      () => false,
    );
    const ok = await Promise.race([probe, this.exited.then(() => false), t.promise.then(() => false)]);
    t.clear();
    if (ok && !this.dead()) return undefined;
    // refused or silent: tell a dying process from a hung one
    const t2 = timeout(5_000);
    await Promise.race([this.exited, t2.promise]);
    t2.clear();
    const child = this.child!;
    if (!this.dead()) return `the gateway (pid ${child.pid}) did not answer /healthz within 5 s`;
    const death: Death = {
      input: this.current,
      code: child.exitCode,
      signal: child.signalCode,
      tail: this.out.trim().split('\n').slice(-12).join('\n'),
    };
    this.deaths.push(death);
    return `the gateway process exited (code ${death.code}, signal ${death.signal}) on input ${death.input}\n${death.tail}`;
  }

  /** Starts the daemon, or the same daemon again (same CA directory and ports) after an input killed it. */
  async ensureRunning(): Promise<void> {
    if (!this.dead()) return;
    const child = spawn(process.execPath, [BIN, 'gateway', '--config', this.gw.config], {
      cwd: this.gw.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = this.watch(child);
    // waitFor retries a check that throws: an exit is returned as a value to end the wait at once
    const state = await waitFor(
      async () => {
        if (this.dead()) return 'exited';
        const r = await request(this.gw.admin, { host: this.gw.admin, path: '/readyz' }).catch(
          () => undefined,
        );
        // said by this process, not another test's gateway on a port picked for this one
        return r?.status === 200 && answeredBy(r.body) === child.pid ? 'ready' : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 50, what: 'the gateway to be ready' },
    );
    if (state === 'exited') throw new Error(`the gateway exited while starting: ${this.out}`);
  }

  /**
   * The gateway still does its job, not merely still has a pid: a peer gateway's tunnel request
   * (HTTP/2 with the tunnel ALPN and x-meshfed-service, as the tunnel pool sends it), a third-party
   * mTLS request (HTTP/2 with SNI, no tunnel ALPN) and an egress request each reach the exported
   * web service. None depends on the listener offering http/1.1, which issue 11 leaves open.
   */
  async checkServes(): Promise<void> {
    const tunnel = await this.eastWestRequest({
      alpn: [TUNNEL_ALPN, 'h2'],
      servername: 'gateway.east.meshfed.internal',
      headers: { 'x-meshfed-service': 'shop/web/http', 'x-meshfed-chain': this.ids.westChainB64 },
    });
    if (tunnel.status !== 200 || tunnel.label !== 'east-web')
      throw new Error(`a peer gateway's tunnel request got ${JSON.stringify(tunnel)}`);
    const direct = await this.eastWestRequest({
      alpn: ['h2'],
      servername: 'web.shop.svc.clusterset.local',
      headers: {},
    });
    if (direct.status !== 200 || direct.label !== 'east-web')
      throw new Error(`a third-party mTLS request got ${JSON.stringify(direct)}`);
    const egress = await request(this.gw.egress, {
      host: 'web.shop.svc.clusterset.local',
      path: '/after-fuzz',
    });
    if (egress.status !== 200) throw new Error(`an egress request got ${egress.status}: ${egress.body}`);
  }

  /**
   * The samples of the gateway's /metrics, by name. Read leniently, every line that looks like a sample:
   * these tests only need the gateway's own gauges and counters (test/gateway/third-party-mtls.test.ts
   * holds /metrics to the strict reader in test/helpers).
   */
  async metrics(): Promise<Map<string, { labels: Record<string, string>; value: number }[]>> {
    const r = await request(this.gw.admin, { host: this.gw.admin, path: '/metrics' });
    const out = new Map<string, { labels: Record<string, string>; value: number }[]>();
    for (const line of r.body.split('\n')) {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels: Record<string, string> = {};
      for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
        labels[k!] = v!;
      const samples = out.get(m[1]!) ?? [];
      samples.push({ labels, value: Number(m[3]) });
      out.set(m[1]!, samples);
    }
    return out;
  }

  /** One HTTP/2 GET of the web service over the east-west listener, as a west gateway. */
  private eastWestRequest(o: {
    alpn: string[];
    servername: string;
    headers: Record<string, string>;
  }): Promise<{ status: number; label?: string; error?: string }> {
    const i = this.gw.eastWest.lastIndexOf(':');
    const host = this.gw.eastWest.slice(0, i);
    const port = Number(this.gw.eastWest.slice(i + 1));
    return new Promise((resolve) => {
      const session = http2.connect(`https://${host}:${port}`, {
        createConnection: () =>
          tls.connect({
            host,
            port,
            ALPNProtocols: o.alpn,
            servername: o.servername,
            ca: this.ids.rootPem,
            cert: this.ids.westGateway.chainPem,
            key: this.ids.westGateway.keyPem,
            checkServerIdentity: () => undefined,
          }),
      });
      const t = setTimeout(() => finish({ status: 0, error: 'no answer within 10 s' }), 10_000);
      const finish = (r: { status: number; label?: string; error?: string }) => {
        clearTimeout(t);
        session.destroy();
        resolve(r);
      };
      session.on('error', (err) => finish({ status: 0, error: err.message }));
      const req = session.request({
        ':method': 'GET',
        ':path': '/after-fuzz',
        ':authority': 'web.shop.svc.clusterset.local',
        ...o.headers,
      });
      let status = 0;
      const chunks: Buffer[] = [];
      req.on('response', (h) => {
        status = Number(h[':status']);
      });
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        try {
          finish({
            status,
            label: (JSON.parse(Buffer.concat(chunks).toString()) as { label: string }).label,
          });
        } catch {
          finish({ status, error: Buffer.concat(chunks).toString().slice(0, 200) });
        }
      });
      req.on('error', (err) => finish({ status, error: err.message }));
      req.end();
    });
  }

  /** SIGTERM (SIGKILL if it has not exited 10 s later), then the backends and the directory go. */
  async stop(): Promise<void> {
    if (!this.dead()) {
      this.child?.kill('SIGTERM');
      const t = timeout(10_000);
      if ((await Promise.race([this.exited, t.promise])) === 'timeout') {
        this.child?.kill('SIGKILL');
        await this.exited;
      }
      t.clear();
    }
    this.backends.close();
    rmSync(this.gw.dir, { recursive: true, force: true });
  }
}
