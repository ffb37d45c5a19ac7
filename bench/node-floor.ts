// The Node floor of the terminate-reuse topology: gw-A and gw-B as the least a Node.js gateway pair can do, in one
// event loop, from the peers harness's environment (the addresses and certificates of bench/peers-gateway.ts). gw-A
// reads a request head, forwards it over a pooled keep-alive mTLS connection to gw-B, which forwards it over a
// pooled keep-alive connection to the backend; each response comes back by its Content-Length, its bytes copied out
// of the gateway's shared read buffer (gateway/socket-reads.ts, as meshfed's gateways read the connections they
// dial). No routing, identity, policy, retries, metrics or header rewriting, and a request with a body, pipelining
// or a response framed otherwise is refused: this is not a gateway, it is the measure of what Node's sockets, TLS
// and event loop cost the same exchange, so that meshfed's figures can be read against it in the same minute
// (bench/passthrough-spread.sh -t terminate -F; docs/performance.md, "Thirteenth round").
import './gateway-flags.ts';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { sharedReads } from '../gateway/socket-reads.ts';
import { allocSamplingOnSignal } from './alloc-sampling.ts';
import { env, hostPort } from './bench-env.ts';

const HEAD_END = Buffer.from('\r\n\r\n');
const MAX_HEAD = 16 * 1024;
/**
 * FLOOR_READS=stream: the dialled connections read as Node's streams do ('data', a fresh allocation a read) rather
 * than into one shared buffer copied out of (shared, the default, as meshfed's gateways read them)
 */
const SHARED_READS = (process.env.FLOOR_READS ?? 'shared') === 'shared';
if (!['shared', 'stream'].includes(process.env.FLOOR_READS ?? 'shared'))
  throw new Error(`FLOOR_READS must be shared or stream, got ${process.env.FLOOR_READS}`);

/**
 * FLOOR_SPIN=N: N thousand iterations of a busy loop before each request is forwarded, so that the floor runs at a
 * slower gateway's rate (the CPU per request the scripts print says how much slower): what the same sockets and TLS
 * cost at that rate (docs/performance.md, "Fourteenth round"). The loop calls nothing; a profile shows it as the
 * floor's own work.
 */
const SPINS = 1000 * Number(process.env.FLOOR_SPIN ?? '0');
if (!Number.isInteger(SPINS) || SPINS < 0 || SPINS > 1e9)
  throw new Error(
    `FLOOR_SPIN must be a whole number of thousands up to 1000000, got ${process.env.FLOOR_SPIN}`,
  );
let sink = 0;
function spin(iterations: number): void {
  let x = sink;
  for (let i = 0; i < iterations; i++) x = (x * 31 + i) | 0;
  sink = x;
}

/** A pooled connection to the next hop; `to` gets the response bytes of the exchange in flight. */
interface Hop {
  socket: net.Socket;
  to: Exchange | undefined;
}

/** One request forwarded and its response relayed back to `client`, framed by its Content-Length. */
class Exchange {
  #head = true;
  #buf: Buffer = Buffer.alloc(0);
  #left = 0;
  readonly client: net.Socket;
  readonly hop: Hop;
  readonly done: (ok: boolean) => void;
  constructor(client: net.Socket, hop: Hop, done: (ok: boolean) => void) {
    this.client = client;
    this.hop = hop;
    this.done = done;
  }

  /** Response bytes from the hop; false asks the hop to stop reading until the client drains. */
  received(d: Buffer): boolean {
    // a client gone mid-response: its drain never comes, so the hop is closed rather than left paused
    if (this.client.destroyed) {
      this.done(false);
      return true;
    }
    if (this.#head) {
      this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
      const end = this.#buf.indexOf(HEAD_END);
      if (end < 0) {
        if (this.#buf.length > MAX_HEAD) this.done(false);
        return true;
      }
      const m = /\r\ncontent-length: *(\d+)\r\n/i.exec(this.#buf.toString('latin1', 0, end + 2));
      if (m === null) {
        this.done(false);
        return true;
      }
      this.#head = false;
      this.#left = end + 4 + Number(m[1]);
      d = this.#buf;
    }
    const piece = d.length > this.#left ? d.subarray(0, this.#left) : d;
    this.#left -= piece.length;
    const ok = this.client.write(piece);
    if (this.#left === 0) this.done(piece.length === d.length);
    else if (!ok) {
      this.client.once('drain', () => this.hop.socket.resume());
      return false;
    }
    return true;
  }
}

/** Keep-alive connections to one next hop, dialled on demand. */
class Pool {
  readonly #idle: Hop[] = [];
  readonly dial: (onread: net.OnReadOpts | undefined) => net.Socket;
  constructor(dial: (onread: net.OnReadOpts | undefined) => net.Socket) {
    this.dial = dial;
  }

  /** Sends `head` on an idle connection (or a new one) and relays the response to `client`. */
  forward(head: Buffer, client: net.Socket, done: (ok: boolean) => void): void {
    let hop = this.#idle.pop();
    if (hop === undefined || hop.socket.destroyed) {
      const h: Hop = { socket: undefined as unknown as net.Socket, to: undefined };
      const to = (d: Buffer): boolean => (h.to === undefined ? false : h.to.received(d));
      if (SHARED_READS) {
        h.socket = this.dial(sharedReads(to));
      } else {
        h.socket = this.dial(undefined);
        h.socket.on('data', (d: Buffer) => to(d) || h.socket.pause());
      }
      h.socket.setNoDelay(true);
      h.socket.on('error', () => h.to?.done(false));
      h.socket.on('close', () => h.to?.done(false));
      hop = h;
    }
    const used = hop;
    used.to = new Exchange(client, used, (ok) => {
      if (used.to === undefined) return;
      used.to = undefined;
      if (ok) this.#idle.push(used);
      else used.socket.destroy();
      done(ok);
    });
    used.socket.write(head);
  }
}

/** Serves a listener's connections: one request at a time each, forwarded through `pool`. */
function serve(client: net.Socket, pool: Pool): void {
  client.setNoDelay(true);
  let buf: Buffer = Buffer.alloc(0);
  let busy = false;
  const next = (): void => {
    const end = buf.indexOf(HEAD_END);
    if (end < 0) {
      if (buf.length > MAX_HEAD) client.destroy();
      return;
    }
    const head = buf.subarray(0, end + 4);
    buf = buf.subarray(end + 4);
    // a body, or a request pipelined behind this one: not the floor's business
    if (buf.length > 0 || /\r\n(content-length|transfer-encoding):/i.test(head.toString('latin1'))) {
      client.destroy();
      return;
    }
    busy = true;
    if (SPINS > 0) spin(SPINS);
    pool.forward(Buffer.from(head), client, (ok) => {
      busy = false;
      if (!ok) client.destroy();
      else next();
    });
  };
  client.on('data', (d: Buffer) => {
    buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
    if (!busy) next();
  });
  client.on('error', () => client.destroy());
}

const certs = env('BENCH_CERTS_DIR');
const ca = [env('BENCH_CA'), `${certs}/cluster-a-ca.crt`, `${certs}/cluster-b-ca.crt`].map((f) =>
  readFileSync(f),
);
const backend = hostPort(env('BENCH_BACKEND_HTTP'));
const gwB = hostPort(env('BENCH_GW_B_ADDR'));
const gwA = hostPort(env('BENCH_GW_A_ADDR'));
const toBackend = new Pool((onread) => net.connect({ ...backend, onread }));
const toGwB = new Pool((onread) =>
  tls.connect({
    ...gwB,
    servername: 'gw.cluster-b.mesh',
    ca,
    cert: readFileSync(env('BENCH_GW_A_CERT')),
    key: readFileSync(env('BENCH_GW_A_KEY')),
    minVersion: 'TLSv1.3',
    onread,
  } as tls.ConnectionOptions),
);
const serverB = tls.createServer(
  {
    cert: readFileSync(env('BENCH_GW_B_CERT')),
    key: readFileSync(env('BENCH_GW_B_KEY')),
    ca,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
  },
  (s) => serve(s, toBackend),
);
const serverA = net.createServer((s) => serve(s, toGwB));
await new Promise<void>((r) => serverB.listen(gwB.port, gwB.host, r));
await new Promise<void>((r) => serverA.listen(gwA.port, gwA.host, r));
process.stdout.write('node floor ready (terminate-reuse, one event loop)\n');
// BENCH_ALLOC_PROFILE=<file>: where the floor allocates, from SIGUSR2 to SIGTERM (bench/fastpath-profile.sh -F -a)
const allocs = allocSamplingOnSignal(process.env.BENCH_ALLOC_PROFILE);
process.once('SIGTERM', () => void allocs.stop().finally(() => process.exit(0)));
