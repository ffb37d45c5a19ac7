import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { CaMaterial, IssuedLeaf, IssueLeafOptions } from '../ca/index.ts';
import { type ErrorCode, MeshfedError } from '../core/index.ts';

// the child runs from the same place as this module: the build's .js, or the sources' .ts
const CHILD = fileURLToPath(
  new URL(
    import.meta.url.endsWith('.ts') ? './issue-leaf-child.ts' : './issue-leaf-child.js',
    import.meta.url,
  ),
);

/**
 * How long a child may take. It needs 0.1-2 s (a Node start on a busy host); one that hangs would otherwise hold
 * the gateway's start, or a renewal, for ever without a word.
 */
const CHILD_TIMEOUT_MS = 60_000;

/**
 * Issues a leaf like ca/'s issueLeaf, in a short-lived child process (issue-leaf-child.ts). Creating a
 * certificate needs @peculiar/x509 and its ASN.1 stack, about 8 MB of resident memory that a daemon would
 * otherwise keep for its whole life to renew two leaves a few times a day; the child costs a Node start
 * per leaf instead. The CA's key reaches the child on its stdin, never in its arguments or environment.
 */
export function issueLeafInChildProcess(
  ca: CaMaterial,
  options: IssueLeafOptions,
  timeoutMs = CHILD_TIMEOUT_MS,
): Promise<IssuedLeaf> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD], { stdio: ['pipe', 'pipe', 'pipe'] });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new MeshfedError('MESHFED_INTERNAL', `leaf issuer: ${e.message}`));
    });
    child.once('close', (status) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(
          new MeshfedError(
            'MESHFED_INTERNAL',
            `leaf issuer: its child process (${CHILD}) gave no answer within ${timeoutMs} ms and was killed; check that ${process.execPath} starts on this host (CPU, memory, a full disk), then start the gateway again`,
            { retryable: true },
          ),
        );
        return;
      }
      let answer: { leaf?: IssuedLeaf; error?: { code: ErrorCode; message: string } } | undefined;
      try {
        answer = JSON.parse(out);
      } catch {
        answer = undefined;
      }
      if (answer?.leaf) {
        const leaf = answer.leaf;
        resolve({ ...leaf, notBefore: new Date(leaf.notBefore), notAfter: new Date(leaf.notAfter) });
      } else if (answer?.error) reject(new MeshfedError(answer.error.code, answer.error.message));
      else
        reject(
          new MeshfedError(
            'MESHFED_INTERNAL',
            `leaf issuer exited with ${status} and no answer: ${err.trim().split('\n').at(-1) ?? ''}`,
          ),
        );
    });
    child.stdin.end(JSON.stringify({ ca, options }));
  });
}
