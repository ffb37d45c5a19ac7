// The child process of leaf-issuer.ts: reads {ca, options} as JSON on stdin, writes {leaf} or {error} as
// JSON on stdout, and exits.
import { issueLeaf } from '../ca/index.ts';
import { toMeshfedError } from '../core/index.ts';

const chunks: Buffer[] = [];
for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
const { ca, options } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
try {
  process.stdout.write(JSON.stringify({ leaf: await issueLeaf(ca, options) }));
} catch (err) {
  const e = toMeshfedError(err);
  process.stdout.write(JSON.stringify({ error: { code: e.code, message: e.message } }));
}
