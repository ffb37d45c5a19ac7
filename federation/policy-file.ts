import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MeshfedError } from '../core/index.ts';
import { replaceFile } from './atomic-file.ts';

/**
 * The last verified policy on disk, beside the catalog (`<stateDir>/policy.json`): the signed bundles themselves,
 * one per scope, so loading re-verifies every signature and a gateway restarted during a NATS outage enforces
 * exactly what it enforced before. Writes are atomic (temp file, fsync, rename, fsync of the folder).
 */
export const POLICY_FILE = 'policy.json';
const FORMAT = 'meshfed-policy/1';

interface PolicyFile {
  format: typeof FORMAT;
  cluster: string;
  savedAt: number;
  /** compact JWS, one per scope */
  bundles: string[];
}

/** The stored bundles, or undefined when there is no file. Throws MESHFED_CATALOG_STORE on a damaged file. */
export function readPolicyFile(dir: string): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, POLICY_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MeshfedError('MESHFED_CATALOG_STORE', `cannot read ${join(dir, POLICY_FILE)}`, { cause: err });
  }
  let file: Partial<PolicyFile>;
  try {
    file = JSON.parse(text) as Partial<PolicyFile>;
  } catch (err) {
    throw new MeshfedError('MESHFED_CATALOG_STORE', `${join(dir, POLICY_FILE)} is not JSON`, { cause: err });
  }
  if (
    file.format !== FORMAT ||
    !Array.isArray(file.bundles) ||
    !file.bundles.every((b) => typeof b === 'string')
  ) {
    throw new MeshfedError(
      'MESHFED_CATALOG_STORE',
      `${join(dir, POLICY_FILE)} is not a ${FORMAT} file; delete it and the gateway resynchronises from NATS`,
    );
  }
  return file.bundles;
}

export async function writePolicyFile(
  dir: string,
  cluster: string,
  bundles: string[],
  now: number,
): Promise<void> {
  const body: PolicyFile = { format: FORMAT, cluster, savedAt: now, bundles };
  await replaceFile(join(dir, POLICY_FILE), (fh) => fh.writeFile(JSON.stringify(body)));
}
