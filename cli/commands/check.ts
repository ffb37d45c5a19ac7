import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { connect as natsConnect } from '@nats-io/transport-node';
import {
  issueLeaf,
  loadCa,
  parseCertificates,
  peerCertificateChain,
  TrustBundle,
  verify,
} from '../../ca/index.ts';
import { MeshfedError, toMeshfedError } from '../../core/index.ts';
import { FAST_ALPN, GATEWAY_ALPN_OFFER } from '../../gateway/index.ts';
import { AdminClient } from '../admin/admin-client.ts';
import type { Command } from '../command.ts';
import { parseFlags, requireFlag, writeJson } from '../command.ts';
import { type LoadedDaemonConfig, loadDaemonConfig } from '../daemon-config.ts';
import { withProgress } from '../progress.ts';
import { checkEnvironment, checkKeyFile } from '../startup-checks.ts';

export type CheckStatus = 'OK' | 'WARN' | 'FAIL';

export interface CheckResult {
  check: string;
  status: CheckStatus;
  detail: string;
  /** what to do about a WARN or FAIL */
  fix?: string;
}

function result(check: string, status: CheckStatus, detail: string, fix?: string): CheckResult {
  return fix === undefined ? { check, status, detail } : { check, status, detail, fix };
}

function humanSeconds(s: number): string {
  if (s < 0) return `${Math.round(-s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${(s / 3600).toFixed(1)}h`;
  return `${Math.round(s / 86_400)}d`;
}

interface Identity {
  chainPem: string;
  keyPem: string;
  bundle: TrustBundle;
}

async function loadIdentity(l: LoadedDaemonConfig, out: CheckResult[]): Promise<Identity | undefined> {
  const c = l.config;
  try {
    if (c.identity.caDir) {
      const dir = l.path(c.identity.caDir);
      checkKeyFile(join(dir, 'ca.key'));
      const bundle = TrustBundle.fromPem(readFileSync(join(dir, 'bundle.crt'), 'utf8'));
      const ca = await loadCa({
        certPem: readFileSync(join(dir, 'ca.crt'), 'utf8'),
        keyPem: readFileSync(join(dir, 'ca.key'), 'utf8'),
        trustDomain: c.trustDomain,
      });
      // the intermediate itself: chains to the bundle, and how long it has left
      const inter = verifyCa(ca.chainPem, bundle);
      const left = (inter.getTime() - Date.now()) / 1000;
      out.push(
        left < 0
          ? result(
              'cluster intermediate',
              'FAIL',
              `${dir}/ca.crt expired ${humanSeconds(left)}`,
              'issue a new one: meshfed ca cluster --ca ROOTDIR --cluster ' + c.cluster,
            )
          : left < 30 * 86_400
            ? result(
                'cluster intermediate',
                'WARN',
                `${dir}/ca.crt expires in ${humanSeconds(left)}`,
                're-issue it with meshfed ca cluster before it expires',
              )
            : result('cluster intermediate', 'OK', `${dir}/ca.crt valid for ${humanSeconds(left)}`),
      );
      const leaf = await issueLeaf(ca, { kind: 'gateway', name: c.name, ttlMs: 10 * 60_000 });
      return { chainPem: leaf.chainPem, keyPem: leaf.keyPem, bundle };
    }
    const id = c.identity;
    for (const k of [id.gatewayKey!, id.federationKey!]) checkKeyFile(l.path(k));
    const bundle = TrustBundle.fromPem(readFileSync(l.path(id.bundle!), 'utf8'));
    for (const [kind, certFile] of [
      ['gateway', id.gatewayCert!],
      ['federation', id.federationCert!],
    ] as const) {
      const pem = readFileSync(l.path(certFile), 'utf8');
      try {
        const v = verify(pem, bundle, { trustDomain: c.trustDomain, cluster: c.cluster, kinds: [kind] });
        const left = (v.notAfter.getTime() - Date.now()) / 1000;
        out.push(
          left < 3600
            ? result(
                `${kind} certificate`,
                'WARN',
                `${v.spiffeId} expires in ${humanSeconds(left)}`,
                `renew it: meshfed ca issue --kind ${kind} …`,
              )
            : result(
                `${kind} certificate`,
                'OK',
                `${v.spiffeId}, chains to the bundle, expires in ${humanSeconds(left)}`,
              ),
        );
      } catch (err) {
        const e = toMeshfedError(err);
        out.push(
          result(
            `${kind} certificate`,
            'FAIL',
            `${certFile}: ${e.message} (${e.code})`,
            `re-issue it: meshfed ca issue --kind ${kind} --ca CLUSTER_CA_DIR`,
          ),
        );
      }
    }
    return {
      chainPem: readFileSync(l.path(id.gatewayCert!), 'utf8'),
      keyPem: readFileSync(l.path(id.gatewayKey!), 'utf8'),
      bundle,
    };
  } catch (err) {
    const e = toMeshfedError(err);
    out.push(
      result(
        'identity',
        'FAIL',
        `${e.message} (${e.code})`,
        'fix the identity section of the config (docs/config.md)',
      ),
    );
    return undefined;
  }
}

/** notAfter of a CA chain (intermediate first) after checking it chains to the bundle. */
function verifyCa(chainPem: string, bundle: TrustBundle): Date {
  const certs = parseCertificates(chainPem, 'the cluster CA file');
  const top = certs[certs.length - 1];
  if (!top) throw new MeshfedError('MESHFED_CA_MALFORMED', 'the cluster CA file holds no certificate');
  const root = bundle.roots().find((r) => top.checkIssued(r) && top.verify(r.publicKey));
  if (!root && !bundle.roots().some((r) => r.fingerprint256 === top.fingerprint256)) {
    throw new MeshfedError(
      'MESHFED_CA_UNKNOWN_ROOT',
      'the cluster intermediate does not chain to any root of the trust bundle',
    );
  }
  return new Date(certs[0]!.validTo);
}

async function checkNats(l: LoadedDaemonConfig, out: CheckResult[]): Promise<void> {
  const f = l.config.federation as { nats: { servers: string[] }; subjectPrefix?: string };
  const t0 = Date.now();
  try {
    const nc = await natsConnect({
      servers: f.nats.servers,
      timeout: 3000,
      reconnect: false,
      name: 'meshfed-check',
    });
    const rtt = await nc.rtt();
    out.push(
      result('NATS reachable', 'OK', `${nc.getServer()} answered in ${Date.now() - t0} ms (rtt ${rtt} ms)`),
    );
    // permissions: a denied publish or subscribe is reported asynchronously by the server
    const prefix = f.subjectPrefix ?? 'meshfed';
    let denied: string | undefined;
    (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'error' && /permission/i.test(String((s as { error?: unknown }).error ?? '')))
          denied = String((s as { error?: unknown }).error);
      }
    })().catch(() => undefined);
    const sub = nc.subscribe(`${prefix}.>`, { max: 1 });
    nc.publish(`${prefix}.check.${l.config.cluster}`, 'ping');
    await nc.flush();
    await nc.rtt();
    sub.unsubscribe();
    out.push(
      denied
        ? result(
            'NATS permissions',
            'FAIL',
            denied,
            `allow this cluster to publish ${prefix}.*.${l.config.cluster}.> and subscribe ${prefix}.> (docs/protocol.md)`,
          )
        : result('NATS permissions', 'OK', `can subscribe ${prefix}.> and publish under ${prefix}`),
    );
    await nc.close();
  } catch (err) {
    out.push(
      result(
        'NATS reachable',
        'FAIL',
        `${f.nats.servers.join(', ')}: ${(err as Error).message}`,
        'check federation.nats.servers, credentials and that nats-server runs',
      ),
    );
  }
}

function handshake(
  address: string,
  id: Identity,
  timeoutMs = 3000,
): Promise<{ ms: number; peer: string; alpn: string }> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(':')),
    Number(address.slice(address.lastIndexOf(':') + 1)),
  ];
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const sock = tlsConnect({
      host,
      port,
      cert: id.chainPem,
      key: id.keyPem,
      ca: id.bundle.toPem(),
      ALPNProtocols: [...GATEWAY_ALPN_OFFER],
      minVersion: 'TLSv1.3',
      checkServerIdentity: () => undefined,
      timeout: timeoutMs,
    });
    sock.once('secureConnect', () => {
      try {
        const chain = peerCertificateChain(sock);
        const v = verify(chain.slice(0, 4), id.bundle, { kinds: ['gateway'] });
        resolve({ ms: performance.now() - t0, peer: v.spiffeId, alpn: sock.alpnProtocol || '' });
      } catch (err) {
        reject(err);
      } finally {
        sock.destroy();
      }
    });
    sock.once('timeout', () => {
      sock.destroy();
      reject(new Error(`no TLS handshake within ${timeoutMs} ms`));
    });
    sock.once('error', reject);
  });
}

/**
 * What HTTP/1.1 calls to a remote gateway travel over, from the protocol it chose when offered both (and whether
 * this gateway offers the fast path at all): mixed versions interoperate, so either is a working federation.
 */
export function dataPlane(alpn: string, fastPathHere: boolean): string {
  if (alpn === FAST_ALPN)
    return fastPathHere
      ? `data plane: HTTP/1.1 fast path (${FAST_ALPN})`
      : `data plane: HTTP/2 tunnel (it offers the fast path, which this gateway's fastPath: false turns off)`;
  return `data plane: HTTP/2 tunnel (${alpn || 'no ALPN'}; it has no fast path: an older version, or fastPath: false there)`;
}

async function runChecks(file: string): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  let l: LoadedDaemonConfig;
  try {
    l = loadDaemonConfig(file);
    out.push(result('config', 'OK', `${l.file} is valid`));
  } catch (err) {
    const e = toMeshfedError(err);
    out.push(
      result('config', 'FAIL', e.message.replace(/\n/g, '; '), 'fix the fields named (docs/config.md)'),
    );
    return out;
  }
  try {
    checkEnvironment();
    out.push(result('environment', 'OK', 'TLS verification is on'));
  } catch (err) {
    out.push(result('environment', 'FAIL', (err as Error).message, 'unset NODE_TLS_REJECT_UNAUTHORIZED'));
  }
  const id = await loadIdentity(l, out);
  const fastPath = l.config.gateway.fastPath;
  await checkNats(l, out);

  const admin = new AdminClient({ address: `unix:${l.adminSocket}` });
  try {
    const t0 = Date.now();
    const status = await admin.status();
    const t1 = Date.now();
    out.push(result('gateway running', 'OK', `admin API at ${l.adminSocket}, ${status.spiffe_id}`));
    const skew = Number(status.now_ms) - (t0 + t1) / 2;
    out.push(
      Math.abs(skew) > 1000 + (t1 - t0)
        ? result(
            'clock',
            'WARN',
            `the gateway's clock is ${Math.round(skew)} ms off this host's`,
            'run NTP (chrony/systemd-timesyncd) on both',
          )
        : result('clock', 'OK', `gateway and this host agree within ${Math.max(1, t1 - t0)} ms`),
    );
    out.push(
      status.nats_connected
        ? result('gateway NATS link', 'OK', `connected to ${status.nats_server}`)
        : result(
            'gateway NATS link',
            'FAIL',
            `the gateway is not connected to NATS: ${status.nats_last_error || 'no detail'}`,
            'check federation.nats and the NATS servers; the gateway keeps routing on its last verified catalog meanwhile',
          ),
    );
    const clusters = await admin.clusters();
    const now = Date.now();
    for (const c of clusters) {
      if (c.self) continue;
      if (c.stale) {
        out.push(
          result(
            `cluster ${c.name}`,
            'WARN',
            `stale: last heartbeat ${Math.round((now - Number(c.last_heartbeat_ms)) / 1000)}s ago; gets no new traffic`,
            `check that cluster's gateways and its NATS link`,
          ),
        );
      } else {
        const hb = Number(c.last_heartbeat_ms);
        const future = hb - now;
        out.push(
          future > 2000
            ? result(
                `cluster ${c.name}`,
                'WARN',
                `heartbeat stamped ${Math.round(future)} ms in the future: clock skew`,
                `run NTP on ${c.name}'s hosts`,
              )
            : result(
                `cluster ${c.name}`,
                'OK',
                `live, ${c.services} services, heartbeat ${Math.round((now - hb) / 1000)}s ago`,
              ),
        );
      }
      if (!id) continue;
      for (const g of c.gateways as { name: string; address: string }[]) {
        try {
          const h = await handshake(g.address, id);
          const expected = `/cluster/${c.name}/gateway/`;
          out.push(
            h.peer.includes(expected)
              ? result(
                  `mTLS to ${c.name}/${g.name}`,
                  'OK',
                  `${g.address}: handshake ${h.ms.toFixed(1)} ms, peer ${h.peer}, ${dataPlane(h.alpn, fastPath)}`,
                )
              : result(
                  `mTLS to ${c.name}/${g.name}`,
                  'FAIL',
                  `${g.address} presented ${h.peer}, not a gateway of ${c.name}`,
                  'the address is announced by the wrong cluster; check its advertise setting',
                ),
          );
        } catch (err) {
          const msg = (err as Error).message;
          const fix = /certificate|alert|unknown ca|self.signed|bad certificate/i.test(msg)
            ? 'the two clusters do not trust each other: make both trust bundles hold the same roots (meshfed ca bundle show)'
            : `check that ${g.address} is reachable from here (firewall, advertise address)`;
          out.push(result(`mTLS to ${c.name}/${g.name}`, 'FAIL', `${g.address}: ${msg}`, fix));
        }
      }
    }
    if (clusters.filter((c: { self: boolean }) => !c.self).length === 0) {
      out.push(
        result(
          'federation',
          'WARN',
          'no other cluster seen yet',
          'check NATS connectivity between clusters (supercluster gateways)',
        ),
      );
    }
    if (id) {
      const ours = new Set(id.bundle.roots().map((r) => r.fingerprint256));
      const theirs = status.bundle_root_fingerprints as string[];
      const same = theirs.length === ours.size && theirs.every((f) => ours.has(f));
      out.push(
        same
          ? result('trust bundle', 'OK', `${ours.size} root(s), the running gateway holds the same`)
          : result(
              'trust bundle',
              'WARN',
              'the running gateway holds a different bundle than its files',
              'send SIGHUP to the gateway to reload it',
            ),
      );
    }
  } catch (err) {
    const e = toMeshfedError(err);
    out.push(result('gateway running', 'FAIL', e.message, `start it: meshfed gateway --config ${file}`));
  } finally {
    admin.close();
  }
  return out;
}

export const checkCommand: Command = {
  path: ['check'],
  summary: 'diagnose: certificates, trust bundle, NATS, clock skew, mTLS to every remote gateway',
  usage: [
    'meshfed check --config gateway.yaml [--json]',
    '',
    'Each line is OK, WARN or FAIL with the fix. Exit code 1 when any check FAILs.',
  ].join('\n'),
  async run(ctx) {
    const { values } = parseFlags(ctx, { config: { type: 'string', short: 'c' } }, 'check');
    const file = requireFlag(values, 'config', 'check');
    const results = await withProgress(ctx.stderr, 'checking', !ctx.json, () => runChecks(file));
    const failed = results.some((r) => r.status === 'FAIL');
    if (ctx.json) {
      writeJson(ctx, { ok: !failed, results });
    } else {
      const w = Math.max(...results.map((r) => r.check.length));
      for (const r of results) {
        ctx.stdout.write(`${r.status.padEnd(4)}  ${r.check.padEnd(w)}  ${r.detail}\n`);
        if (r.fix && r.status !== 'OK') ctx.stdout.write(`${' '.repeat(6 + w)}  fix: ${r.fix}\n`);
      }
    }
    return failed ? 1 : 0;
  },
};
