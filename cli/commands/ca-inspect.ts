import { describeCertificate, parseCertificates, readInputFile } from '../../ca/index.ts';
import { MeshfedError } from '../../core/index.ts';
import { type Command, parseFlags, renderTable, writeJson } from '../command.ts';

const NAME = 'ca inspect';

export const caInspectCommand: Command = {
  path: ['ca', 'inspect'],
  summary:
    'print the certificates in a PEM file (subject, SPIFFE ID, issuer, validity, key type, fingerprint)',
  usage: `Usage: meshfed ca inspect FILE [--json]

Prints every certificate in FILE, leaf first as stored. Never prints key material.`,
  async run(ctx) {
    const { values, positionals } = parseFlags(ctx, {}, NAME, true);
    if (positionals.length !== 1) throw new MeshfedError('MESHFED_USAGE', `${NAME}: give exactly one FILE`);
    const file = positionals[0]!;
    const certs = parseCertificates(readInputFile(file), file).map(describeCertificate);
    if (values.json) {
      writeJson(ctx, { file, certificates: certs });
      return 0;
    }
    for (const [i, d] of certs.entries()) {
      ctx.stdout.write(`${i > 0 ? '\n' : ''}certificate ${i + 1} of ${certs.length}\n`);
      ctx.stdout.write(
        renderTable(
          ['field', 'value'],
          [
            ['subject', d.subject],
            ['spiffe id', d.spiffeId],
            ['issuer', d.issuer],
            ['not before', d.notBefore],
            ['not after', d.notAfter],
            ['key type', d.keyType],
            [
              'ca',
              d.ca
                ? `yes${d.pathLen === undefined ? '' : ` (pathLen ${d.pathLen})`}${d.selfSigned ? ', self-signed root' : ''}`
                : 'no',
            ],
            ['dns names', d.dnsNames.join(', ') || undefined],
            ['serial', d.serial],
            ['fingerprint', d.fingerprint256],
          ],
        ),
      );
    }
    return 0;
  },
};
