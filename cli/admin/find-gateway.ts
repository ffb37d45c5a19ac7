import { readFileSync } from 'node:fs';
import { MeshfedError } from '../../core/index.ts';
import { loadDaemonConfig } from '../daemon-config.ts';
import { AdminClient } from './admin-client.ts';

/** `--config FILE` (the gateway's own config) or `--admin ADDR` (unix:/path or host:port + --cert/--key/--ca). */
export const ADMIN_FLAGS = {
  config: { type: 'string', short: 'c' },
  admin: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  ca: { type: 'string' },
} as const;

export function adminClientFrom(values: Record<string, unknown>, command: string): AdminClient {
  const admin = values.admin as string | undefined;
  const config = values.config as string | undefined;
  if (admin) {
    if (admin.startsWith('unix:') || admin.startsWith('/')) {
      return new AdminClient({ address: admin.startsWith('unix:') ? admin : `unix:${admin}` });
    }
    const cert = values.cert as string | undefined;
    const key = values.key as string | undefined;
    const ca = values.ca as string | undefined;
    if (!cert || !key || !ca) {
      throw new MeshfedError(
        'MESHFED_USAGE',
        `${command}: --admin ${admin} is a TCP address: also give --cert/--key (an admin identity: "meshfed ca issue --ca ADMIN-DIR --kind admin", ADMIN-DIR made by "meshfed ca admin") and --ca (the trust bundle)`,
      );
    }
    return new AdminClient({
      address: admin,
      tls: {
        certPem: readFileSync(cert, 'utf8'),
        keyPem: readFileSync(key, 'utf8'),
        caPem: readFileSync(ca, 'utf8'),
      },
    });
  }
  if (config) {
    const loaded = loadDaemonConfig(config);
    return new AdminClient({ address: `unix:${loaded.adminSocket}` });
  }
  throw new MeshfedError(
    'MESHFED_USAGE',
    `${command}: say which gateway: --config gateway.yaml (its config file) or --admin unix:/path/admin.sock`,
  );
}
