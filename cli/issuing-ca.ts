import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CaMaterial, loadCa } from '../ca/index.ts';
import { MeshfedError } from '../core/index.ts';

/**
 * The cluster intermediate a `caDir` daemon issues its own leaves from. Step 2 of a root rotation replaces it on
 * disk (`meshfed ca cluster --ca NEWROOT … --force`); `reload()` (SIGHUP) picks the new one up, so the next leaves
 * chain to the new root. A pair that cannot be used (half written, key not matching) is refused and the current
 * intermediate stays in use.
 */
export class IssuingCaDir {
  readonly #dir: string;
  readonly #trustDomain: string;
  /** refuses a key file others can read (checkKeyFile, cli/startup-checks.ts) */
  readonly #checkKey: (file: string) => void;
  #ca: CaMaterial | undefined;
  #loaded: { certPem: string; keyPem: string } | undefined;

  constructor(o: { dir: string; trustDomain: string; checkKey: (file: string) => void }) {
    this.#dir = o.dir;
    this.#trustDomain = o.trustDomain;
    this.#checkKey = o.checkKey;
  }

  current(): CaMaterial {
    if (!this.#ca) throw new MeshfedError('MESHFED_INTERNAL', `the CA of ${this.#dir} has not been loaded`);
    return this.#ca;
  }

  /** Reads ca.crt and ca.key; true when they differ from the pair in use (always true the first time). */
  async reload(): Promise<boolean> {
    const keyFile = join(this.#dir, 'ca.key');
    this.#checkKey(keyFile);
    const certPem = readFileSync(join(this.#dir, 'ca.crt'), 'utf8');
    const keyPem = readFileSync(keyFile, 'utf8');
    if (this.#ca && certPem === this.#loaded?.certPem && keyPem === this.#loaded.keyPem) return false;
    this.#ca = await loadCa({ certPem, keyPem, trustDomain: this.#trustDomain });
    this.#loaded = { certPem, keyPem };
    return true;
  }
}
