import { statSync } from 'node:fs';
import { MeshfedError } from '../core/index.ts';

/** Refuses environments that would silently turn TLS verification off. */
export function checkEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  if (env.NODE_TLS_REJECT_UNAUTHORIZED === '0') {
    throw new MeshfedError(
      'MESHFED_INSECURE_ENVIRONMENT',
      'NODE_TLS_REJECT_UNAUTHORIZED=0 turns TLS certificate verification off; meshfed refuses to start. Unset it.',
    );
  }
}

/** A private key readable by group or others is refused: mTLS identity must not leak. */
export function checkKeyFile(file: string): void {
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (err) {
    throw new MeshfedError(
      'MESHFED_CONFIG_UNREADABLE',
      `${file}: cannot read key file: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  if ((mode & 0o077) !== 0) {
    throw new MeshfedError(
      'MESHFED_FILE_INSECURE',
      `${file}: private key is readable by other users (mode ${(mode & 0o777).toString(8)}); run: chmod 600 ${file}`,
    );
  }
}
