import { PassThrough } from 'node:stream';

/** stdout and stderr for runCli, with what was written to each. */
export function io() {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d) => (o += d));
  err.on('data', (d) => (e += d));
  return { stdout: out, stderr: err, out: () => o, err: () => e };
}
