import { EventEmitter } from 'node:events';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { MAX_TIMER_MS, MeshfedError, type Logger, toMeshfedError } from '../core/index.ts';
import { certFacts } from './cert-facts.ts';
import { assertKeyMatches, readPrivateKey } from './keys.ts';
import { parseCertificates } from './pem.ts';
import { TrustBundle } from './trust-bundle.ts';
import type { IssuedLeaf } from './types.ts';

const MIN_RENEW_DELAY_MS = 500;
/**
 * How often a pending renewal looks at the wall clock again. Validity is wall-clock time; a timer is not: a
 * step of the clock (NTP correcting it, a VM resumed, a laptop waking) moves the renewal point, which one
 * long timer set at the start would miss by as much as the step.
 */
const WALL_RECHECK_MS = 30_000;

export interface CertificateSourceOptions {
  issue: () => Promise<IssuedLeaf>;
  bundle: () => TrustBundle;
  /** fraction of the leaf's lifetime after which it is renewed; default 2/3 */
  renewAt?: number;
  logger: Logger;
  /** the wall clock validity is read against (tests step it); default Date.now */
  now?: () => number;
  /** how often a pending renewal reads the wall clock again; default 30 s */
  recheckMs?: number;
}

/**
 * The certificate of a long-running process. It renews the leaf at 2/3 of its life (while the old one is still
 * valid, so TLS contexts can be swapped without dropping connections) and emits 'rotated' (leaf) after each
 * renewal. A failed renewal emits 'error' (when anyone listens; it is always logged) and is retried with back-off
 * until it succeeds; the current leaf stays in use meanwhile.
 */
export class CertificateSource extends EventEmitter {
  readonly #issue: () => Promise<IssuedLeaf>;
  readonly #bundle: () => TrustBundle;
  readonly #renewAt: number;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #recheckMs: number;
  #current: IssuedLeaf | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #failures = 0;
  #onStop: (() => void) | undefined;

  constructor(o: CertificateSourceOptions) {
    super();
    const renewAt = o.renewAt ?? 2 / 3;
    if (!(renewAt > 0 && renewAt < 1)) {
      throw new MeshfedError(
        'MESHFED_USAGE',
        `renewAt must be between 0 and 1 (a fraction of the lifetime), got ${renewAt}`,
      );
    }
    this.#issue = o.issue;
    this.#bundle = o.bundle;
    this.#renewAt = renewAt;
    this.#log = o.logger;
    this.#now = o.now ?? Date.now;
    this.#recheckMs = o.recheckMs ?? WALL_RECHECK_MS;
  }

  /** Obtains the first leaf and starts renewing. Rejects when the first issuance fails. */
  async start(): Promise<IssuedLeaf> {
    this.#stopped = false;
    const leaf = await this.#issue();
    this.#current = leaf;
    this.#log.info({ cert: leaf }, 'certificate ready');
    this.#scheduleRenewal(leaf);
    return leaf;
  }

  current(): IssuedLeaf {
    if (!this.#current)
      throw new MeshfedError('MESHFED_INTERNAL', 'CertificateSource.current() called before start()');
    return this.#current;
  }

  bundle(): TrustBundle {
    return this.#bundle();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#onStop?.();
  }

  /** Forces a renewal now (e.g. after a root rotation); resolves with the new leaf or rejects. */
  async renewNow(): Promise<IssuedLeaf> {
    const leaf = await this.#issue();
    this.#adopt(leaf);
    return leaf;
  }

  #adopt(leaf: IssuedLeaf): void {
    const previous = this.#current;
    this.#current = leaf;
    this.#failures = 0;
    if (previous && previous.certPem === leaf.certPem) return;
    this.#log.info({ cert: leaf }, 'certificate rotated');
    this.emit('rotated', leaf);
  }

  #renewDelay(leaf: IssuedLeaf): number {
    const start = leaf.notBefore.getTime();
    const life = leaf.notAfter.getTime() - start;
    // never spin: a leaf already past its renewal point (e.g. heavily backdated) is renewed after a short pause
    return Math.max(MIN_RENEW_DELAY_MS, start + life * this.#renewAt - this.#now());
  }

  /** Renews at the leaf's renewal point, reading the wall clock again at least every recheckMs. */
  #scheduleRenewal(leaf: IssuedLeaf): void {
    const delay = this.#renewDelay(leaf);
    // the short pause renewDelay keeps (MIN_RENEW_DELAY_MS) is not worth a recheck
    if (delay <= Math.max(this.#recheckMs, MIN_RENEW_DELAY_MS)) {
      this.#schedule(delay);
      return;
    }
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#scheduleRenewal(leaf), this.#recheckMs);
    this.#timer.unref();
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    const step = Math.min(delayMs, MAX_TIMER_MS);
    this.#timer = setTimeout(() => {
      if (step < delayMs) this.#schedule(delayMs - step);
      else void this.#renew();
    }, step);
    // a pending renewal must not keep a process alive on its own
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    try {
      const leaf = await this.#issue();
      if (this.#stopped) return;
      this.#adopt(leaf);
      this.#scheduleRenewal(leaf);
    } catch (err) {
      if (this.#stopped) return;
      this.#failures++;
      const e = toMeshfedError(err);
      const cur = this.#current;
      const left = cur ? cur.notAfter.getTime() - this.#now() : 0;
      // back off 1 s, 2 s, 4 s … but never past a tenth of the remaining lifetime, and at most 30 s
      const delay = Math.max(
        250,
        Math.min(1000 * 2 ** (this.#failures - 1), 30_000, Math.max(left / 10, 250)),
      );
      this.#log.error({ err: e, retryInMs: delay, cert: cur }, 'certificate renewal failed');
      if (this.listenerCount('error') > 0) this.emit('error', e);
      this.#schedule(delay);
    }
  }

  /**
   * A source for leaves issued outside the process (e.g. by `meshfed ca issue` from cron, or cert-manager): it
   * reads the files, re-reads them whenever they change (poll every `pollMs`, default 2 s; write new files to a temp
   * name and rename them into place), and emits 'rotated' when the certificate changes. A half-written pair (key not
   * matching the certificate) is reported as 'error' and the previous pair stays in use.
   */
  static fromFiles(o: {
    certFile: string;
    keyFile: string;
    bundleFile: string;
    passphrase?: string;
    pollMs?: number;
    logger: Logger;
  }): CertificateSource {
    let bundle: TrustBundle | undefined;
    const readAll = async (): Promise<IssuedLeaf> => {
      const leaf = readLeafFiles(o.certFile, o.keyFile, o.passphrase);
      bundle = TrustBundle.fromPem(readText(o.bundleFile), { what: o.bundleFile });
      return leaf;
    };
    const src = new CertificateSource({
      issue: readAll,
      bundle: () => {
        if (!bundle) throw new MeshfedError('MESHFED_INTERNAL', 'the certificate source has not started');
        return bundle;
      },
      logger: o.logger,
    });
    const interval = o.pollMs ?? 2000;
    const onChange = (): void => {
      void src.renewNow().catch((err: unknown) => {
        const e = toMeshfedError(err);
        src.#log.warn({ err: e }, 'certificate files changed but cannot be used yet');
        if (src.listenerCount('error') > 0) src.emit('error', e);
      });
    };
    const files = [o.certFile, o.keyFile, o.bundleFile];
    for (const f of files) watchFile(f, { interval, persistent: false }, onChange);
    src.#onStop = () => {
      for (const f of files) unwatchFile(f, onChange);
    };
    return src;
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new MeshfedError(
      'MESHFED_CA_MALFORMED',
      `${path}: cannot be read (${(err as NodeJS.ErrnoException).code})`,
      { cause: err },
    );
  }
}

/** Reads a leaf certificate chain and its key from files into an IssuedLeaf, checking that they belong together. */
export function readLeafFiles(certFile: string, keyFile: string, passphrase?: string): IssuedLeaf {
  const certPem = readText(certFile);
  const certs = parseCertificates(certPem, certFile);
  const key = readPrivateKey(readText(keyFile), keyFile, passphrase);
  assertKeyMatches(certs[0]!, key, keyFile);
  const f = certFacts(certs[0]!);
  const spiffeId = f.uris.find((u) => u.startsWith('spiffe://'));
  if (!spiffeId)
    throw new MeshfedError('MESHFED_CA_BAD_SPIFFE_ID', `${certFile}: the certificate carries no SPIFFE ID`);
  return {
    certPem: certs[0]!.toString(),
    chainPem: certs.map((c) => c.toString()).join(''),
    keyPem: key.export({ type: 'pkcs8', format: 'pem' }) as string,
    spiffeId,
    serial: f.serial,
    notBefore: f.notBefore,
    notAfter: f.notAfter,
  };
}
