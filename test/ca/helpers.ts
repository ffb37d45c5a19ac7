import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A scratch directory removed by `cleanup()`. */
export function scratchDir(prefix = 'meshfed-ca-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface OpensslResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function openssl(args: string[], cwd?: string): OpensslResult {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `openssl verify -CAfile root -untrusted intermediates leaf`: true when openssl accepts the chain. */
export function opensslVerify(
  dir: string,
  rootsPem: string,
  intermediatesPem: string,
  leafPem: string,
): OpensslResult {
  const name = Math.random().toString(16).slice(2);
  const root = join(dir, `${name}-roots.pem`);
  const ints = join(dir, `${name}-ints.pem`);
  const leaf = join(dir, `${name}-leaf.pem`);
  writeFileSync(root, rootsPem);
  writeFileSync(leaf, leafPem);
  const args = ['verify', '-CAfile', root];
  if (intermediatesPem.trim() !== '') {
    writeFileSync(ints, intermediatesPem);
    args.push('-untrusted', ints);
  }
  args.push(leaf);
  return openssl(args);
}

/** The error code a function throws (undefined when it does not throw). */
export function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    return (err as { code?: string }).code ?? 'NO_CODE';
  }
  return undefined;
}

export async function asyncCodeOf(f: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await f();
  } catch (err) {
    return (err as { code?: string }).code ?? 'NO_CODE';
  }
  return undefined;
}

/**
 * A leaf for `spiffeId` signed with `ca`'s key by openssl, outside meshfed's issuer (which refuses to mint what
 * verify() refuses): what the holder of a CA key can make with openssl alone. EKU clientAuth and serverAuth.
 */
export function forgeLeaf(
  ca: { certPem: string; keyPem: string; chainPem: string },
  spiffeId: string,
): { certPem: string; keyPem: string; chainPem: string } {
  const { dir, cleanup } = scratchDir('meshfed-forge-');
  try {
    const run = (args: string[]) => {
      const r = openssl(args, dir);
      if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
    };
    writeFileSync(join(dir, 'ca.crt'), ca.certPem);
    writeFileSync(join(dir, 'ca.key'), ca.keyPem, { mode: 0o600 });
    writeFileSync(
      join(dir, 'ext.cnf'),
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'extendedKeyUsage=clientAuth,serverAuth',
        `subjectAltName=critical,URI:${spiffeId}`,
        'subjectKeyIdentifier=hash',
        'authorityKeyIdentifier=keyid',
      ].join('\n'),
    );
    run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'leaf.key']);
    run(['req', '-new', '-key', 'leaf.key', '-subj', '/CN=forged', '-out', 'leaf.csr']);
    run([
      'x509',
      '-req',
      '-in',
      'leaf.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-set_serial',
      `0x${Math.floor(Math.random() * 2 ** 48).toString(16)}`,
      '-days',
      '1',
      '-extfile',
      'ext.cnf',
      '-out',
      'leaf.crt',
    ]);
    const certPem = readFileSync(join(dir, 'leaf.crt'), 'utf8');
    return { certPem, keyPem: readFileSync(join(dir, 'leaf.key'), 'utf8'), chainPem: certPem + ca.chainPem };
  } finally {
    cleanup();
  }
}
