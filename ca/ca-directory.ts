import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MeshfedError } from '../core/index.ts';
import { certFacts } from './cert-facts.ts';
import { readInputFile, readKeyFile } from './files.ts';
import { loadCa } from './issuer.ts';
import { parseCertificates } from './pem.ts';
import { TrustBundle } from './trust-bundle.ts';
import type { CaMaterial } from './types.ts';

/**
 * On-disk layout written by `meshfed ca`:
 *   root directory (init):      root.crt, root.key, bundle.crt, ca.json
 *   cluster directory (cluster): ca.crt (intermediate [+ its issuers below the root]), ca.key, bundle.crt, ca.json
 *   admin directory (admin):    the same files as a cluster directory, for the admin intermediate
 *   leaf directory (issue):     cert.pem (leaf + intermediates), key.pem, bundle.crt
 * ca.json records what a certificate alone cannot say (the trust domain of a brought-your-own root).
 */
export const ROOT_FILES = {
  cert: 'root.crt',
  key: 'root.key',
  bundle: 'bundle.crt',
  meta: 'ca.json',
} as const;
export const CLUSTER_FILES = {
  cert: 'ca.crt',
  key: 'ca.key',
  bundle: 'bundle.crt',
  meta: 'ca.json',
} as const;
export const LEAF_FILES = { cert: 'cert.pem', key: 'key.pem', bundle: 'bundle.crt' } as const;

export interface CaMeta {
  trustDomain: string;
  keyType: string;
  cluster?: string;
  createdAt: string;
}

export function caMetaJson(ca: CaMaterial): string {
  const meta: CaMeta = {
    trustDomain: ca.trustDomain,
    keyType: ca.keyType,
    ...(ca.cluster === undefined ? {} : { cluster: ca.cluster }),
    createdAt: new Date().toISOString(),
  };
  return `${JSON.stringify(meta, null, 2)}\n`;
}

function readMeta(dir: string, file: string): CaMeta | undefined {
  const path = join(dir, file);
  if (!existsSync(path)) return undefined;
  try {
    const m = JSON.parse(readInputFile(path)) as Partial<CaMeta>;
    if (typeof m.trustDomain !== 'string') throw new Error('no trustDomain');
    return m as CaMeta;
  } catch (err) {
    throw new MeshfedError(
      'MESHFED_CA_MALFORMED',
      `${path}: not a meshfed CA description (${(err as Error).message})`,
      { cause: err },
    );
  }
}

/** The trust domain a CA certificate names in its spiffe:// URI SAN, if any. */
function trustDomainOf(certPem: string, what: string): string | undefined {
  const uri = certFacts(parseCertificates(certPem, what)[0]!).uris.find((u) => u.startsWith('spiffe://'));
  return uri?.slice('spiffe://'.length).split('/')[0];
}

export interface LoadedCaDir {
  ca: CaMaterial;
  bundle: TrustBundle;
  /**
   * "root" for an init directory (which may hold a brought-your-own intermediate), "cluster" for a cluster one,
   * "admin" for the admin intermediate's
   */
  layout: 'root' | 'cluster' | 'admin';
  certFile: string;
  keyFile: string;
  bundleFile: string;
}

/** Loads a directory written by `meshfed ca init` or `meshfed ca cluster`, validating everything. */
export async function loadCaDir(dir: string, o: { passphrase?: string } = {}): Promise<LoadedCaDir> {
  const intermediate = existsSync(join(dir, CLUSTER_FILES.cert));
  const files = intermediate ? CLUSTER_FILES : ROOT_FILES;
  const certFile = join(dir, files.cert);
  const keyFile = join(dir, files.key);
  const bundleFile = join(dir, files.bundle);
  const hint = `is ${dir} a directory made by "meshfed ca init" or "meshfed ca cluster"?`;
  const certPem = readInputFile(certFile, hint);
  const keyPem = readKeyFile(keyFile, hint);
  const meta = readMeta(dir, files.meta);
  const trustDomain = meta?.trustDomain ?? trustDomainOf(certPem, certFile);
  if (!trustDomain) {
    throw new MeshfedError(
      'MESHFED_CA_MALFORMED',
      `${join(dir, files.meta)} is missing and ${certFile} names no trust domain`,
    );
  }
  const ca = await loadCa({
    certPem,
    keyPem,
    trustDomain,
    certName: certFile,
    keyName: keyFile,
    ...(o.passphrase === undefined ? {} : { passphrase: o.passphrase }),
  });
  if (intermediate && ca.cluster === undefined && !ca.admin) {
    throw new MeshfedError(
      'MESHFED_CA_NOT_A_CA',
      `${certFile} is neither a cluster intermediate (URI SAN spiffe://${trustDomain}/cluster/<name>) nor the admin intermediate (spiffe://${trustDomain}/admin)`,
    );
  }
  const layout = !intermediate ? 'root' : ca.admin ? 'admin' : 'cluster';
  const bundlePem = existsSync(bundleFile) ? readInputFile(bundleFile) : ca.bundlePem;
  if (!bundlePem) {
    throw new MeshfedError(
      'MESHFED_USAGE',
      `${bundleFile} is missing: the roots this CA chains to are unknown`,
    );
  }
  const bundle = TrustBundle.fromPem(bundlePem, { what: bundleFile });
  return { ca: { ...ca, bundlePem: bundle.toPem() }, bundle, layout, certFile, keyFile, bundleFile };
}
