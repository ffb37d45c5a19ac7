import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CertificateSource,
  type IssuedLeaf,
  type IssueLeafOptions,
  issueLeaf,
  TrustBundle,
} from '../ca/index.ts';
import { componentLogger, type Logger, MeshfedError } from '../core/index.ts';
import type { LoadedDaemonConfig } from './daemon-config.ts';
import { IssuingCaDir } from './issuing-ca.ts';
import { issueLeafInChildProcess } from './leaf-issuer.ts';
import { checkKeyFile } from './startup-checks.ts';
import { watchTrustFiles } from './trust-watch.ts';

/** how often the trust files are checked for changes, and how long they must be quiet before a reload */
const TRUST_POLL_MS = 2_000;
const TRUST_DEBOUNCE_MS = 500;

function readTrustFile<T>(file: string, what: string, use: (pem: string) => T): T {
  try {
    return use(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new MeshfedError(
      'MESHFED_CA_MALFORMED',
      `${file}: cannot load ${what}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/**
 * The daemon's trust material: the trust bundle (with identity.intermediates), the gateway and federation
 * identities (issued from identity.caDir, or read from files), and their reload. The identity section of the
 * config is not live (a change needs a restart), so what it names stays put for the life of the process.
 */
export class DaemonTrust {
  readonly #loaded: () => LoadedDaemonConfig;
  readonly #log: Logger;
  #bundle!: TrustBundle;
  /** with identity.caDir: the intermediate this daemon issues its own leaves from */
  #issuingCa: IssuingCaDir | undefined;
  /** set while the leaves move to a new intermediate (reload) */
  #rotatingIntermediate = false;
  /** the trust reload under way: the next one starts after it */
  #reloads: Promise<unknown> = Promise.resolve();
  gatewayIdentity!: CertificateSource;
  federationIdentity!: CertificateSource;

  constructor(o: { loaded: () => LoadedDaemonConfig; log: Logger }) {
    this.#loaded = o.loaded;
    this.#log = o.log;
  }

  /** the bundle in use; read it through a function, it is replaced on every reload */
  get bundle(): TrustBundle {
    return this.#bundle;
  }

  /** Reads the trust bundle (and identity.intermediates) for the first time. */
  loadBundle(): void {
    this.#bundle = this.#readBundle();
  }

  #readBundle(): TrustBundle {
    const l = this.#loaded();
    const c = l.config;
    const file = c.identity.caDir ? join(l.path(c.identity.caDir), 'bundle.crt') : l.path(c.identity.bundle!);
    const bundle = readTrustFile(file, 'the trust bundle', (pem) => TrustBundle.fromPem(pem));
    if (c.identity.intermediates) {
      const extra = l.path(c.identity.intermediates);
      readTrustFile(extra, 'identity.intermediates', (pem) => bundle.addIntermediates(pem));
    }
    return bundle;
  }

  /** Builds and starts the gateway and federation identities. */
  async startIdentities(): Promise<void> {
    const l = this.#loaded();
    const c = l.config;
    const bundle = () => this.#bundle;
    if (c.identity.caDir) {
      const ca = new IssuingCaDir({
        dir: l.path(c.identity.caDir),
        trustDomain: c.trustDomain,
        checkKey: checkKeyFile,
      });
      await ca.reload();
      this.#issuingCa = ca;
      const ttlMs = c.identity.leafTtl;
      // peers whose clocks run up to maxClockSkew behind ours must accept our leaves in their handshakes
      const clockSkewMs = c.federation.maxClockSkew;
      // Leaves are issued in a child process (the certificate library stays out of this one), except right
      // after the intermediate changed (root rotation step 2): then both gateways of a link must move to
      // the new leaves within the reload, and a child's start-up (0.5-2 s on a busy host) let requests
      // race the rotation (test/e2e/root-rotation.test.ts lost some to upstream resets).
      const issue = (o: IssueLeafOptions) =>
        this.#rotatingIntermediate ? issueLeaf(ca.current(), o) : issueLeafInChildProcess(ca.current(), o);
      this.gatewayIdentity = new CertificateSource({
        issue: () => issue({ kind: 'gateway', name: c.name, ttlMs, clockSkewMs }),
        bundle,
        logger: componentLogger(this.#log, 'identity'),
      });
      this.federationIdentity = new CertificateSource({
        issue: () => issue({ kind: 'federation', ttlMs, clockSkewMs }),
        bundle,
        logger: componentLogger(this.#log, 'identity'),
      });
    } else {
      const id = c.identity;
      checkKeyFile(l.path(id.gatewayKey!));
      checkKeyFile(l.path(id.federationKey!));
      this.gatewayIdentity = CertificateSource.fromFiles({
        certFile: l.path(id.gatewayCert!),
        keyFile: l.path(id.gatewayKey!),
        bundleFile: l.path(id.bundle!),
        logger: componentLogger(this.#log, 'identity'),
      });
      this.federationIdentity = CertificateSource.fromFiles({
        certFile: l.path(id.federationCert!),
        keyFile: l.path(id.federationKey!),
        bundleFile: l.path(id.bundle!),
        logger: componentLogger(this.#log, 'identity'),
      });
    }
    const onError = (err: unknown) =>
      this.#log.error({ err }, 'certificate renewal failed; keeping the current one');
    this.gatewayIdentity.on('error', onError);
    this.federationIdentity.on('error', onError);
    this.gatewayIdentity.on('rotated', (leaf: IssuedLeaf) =>
      this.#log.info(
        { cert: { spiffeId: leaf.spiffeId, serial: leaf.serial, notAfter: leaf.notAfter } },
        'gateway certificate rotated',
      ),
    );
    // both leaves at once: with identity.caDir each is a child process of 0.5-2 s on a busy host
    // (leaf-issuer.ts); both settle before a failure is reported, so none is left starting behind a failed start
    const started = await Promise.allSettled([this.gatewayIdentity.start(), this.federationIdentity.start()]);
    for (const r of started) if (r.status === 'rejected') throw r.reason;
  }

  /**
   * Re-reads the trust material (SIGHUP, or one of its files changed): the bundle and identity.intermediates,
   * handed to `bundleChanged` (every listener and pool at once), and with identity.caDir the cluster
   * intermediate, from which the leaves are re-issued when it changed (root rotation step 2). One reload at a
   * time; a file that cannot be used is refused (the error says which and why) and the material in use stays.
   */
  reload(bundleChanged: () => void): Promise<string[]> {
    const next = this.#reloads.then(async () => {
      const applied: string[] = [];
      this.#bundle = this.#readBundle();
      bundleChanged();
      applied.push('trust bundle re-read');
      if (await this.#issuingCa?.reload()) {
        // a new intermediate: the leaves move to it now, not at their next renewal
        this.#rotatingIntermediate = true;
        try {
          await Promise.all([this.gatewayIdentity.renewNow(), this.federationIdentity.renewNow()]);
        } finally {
          this.#rotatingIntermediate = false;
        }
        applied.push('identity.caDir re-read: leaves re-issued');
      }
      return applied;
    });
    this.#reloads = next.catch(() => undefined);
    return next;
  }

  /** Watches the files reload() reads: a change to any of them reloads without SIGHUP. Returns the unwatch. */
  watch(onChange: () => void): () => void {
    return watchTrustFiles(this.#files(), {
      pollMs: TRUST_POLL_MS,
      debounceMs: TRUST_DEBOUNCE_MS,
      onChange,
    });
  }

  #files(): string[] {
    const l = this.#loaded();
    const id = l.config.identity;
    const files = [id.intermediates ? l.path(id.intermediates) : undefined];
    if (id.caDir) {
      const dir = l.path(id.caDir);
      files.push(join(dir, 'bundle.crt'), join(dir, 'ca.crt'), join(dir, 'ca.key'));
    } else files.push(l.path(id.bundle!));
    return files.filter((f): f is string => f !== undefined);
  }
}
