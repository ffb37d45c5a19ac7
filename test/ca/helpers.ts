import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
