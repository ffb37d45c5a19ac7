import {
  CLUSTER_FILES,
  caMetaJson,
  issueIntermediate,
  loadCaDir,
  writeFilesAtomically,
} from '../../ca/index.ts';
import { MeshfedError } from '../../core/index.ts';
import { type Command, parseFlags, requireFlag } from '../command.ts';
import { outPath, parseDuration, parseKeyType, readPassphraseFile, reportWritten } from './ca-shared.ts';

const NAME = 'ca cluster';

export const caClusterCommand: Command = {
  path: ['ca', 'cluster'],
  summary: "issue a cluster's intermediate CA from the root",
  usage: `Usage: meshfed ca cluster --ca DIR --cluster NAME --out CDIR [--ttl 365d] [--key-type ...] [--force]

Issues the intermediate of one cluster (CA, pathLen 0, URI SAN spiffe://<td>/cluster/<NAME>) from the CA in DIR
(made by "meshfed ca init"). Writes CDIR/ca.crt, CDIR/ca.key (0600), CDIR/bundle.crt (every root) and CDIR/ca.json.
NAME must be a DNS label (lower-case letters, digits, '-').`,
  async run(ctx) {
    const { values } = parseFlags(
      ctx,
      {
        ca: { type: 'string' },
        cluster: { type: 'string' },
        out: { type: 'string' },
        ttl: { type: 'string' },
        'key-type': { type: 'string' },
        'passphrase-file': { type: 'string' },
        force: { type: 'boolean' },
      },
      NAME,
    );
    const dir = requireFlag(values, 'ca', NAME);
    const cluster = requireFlag(values, 'cluster', NAME);
    const out = requireFlag(values, 'out', NAME);
    const ttlMs = parseDuration(values.ttl, 'ttl', NAME);
    const keyType = parseKeyType(values['key-type'], NAME);
    const passphrase = readPassphraseFile(values['passphrase-file']);
    const parent = await loadCaDir(dir, passphrase === undefined ? {} : { passphrase });
    if (parent.layout === 'cluster') {
      throw new MeshfedError(
        'MESHFED_CA_NOT_A_CA',
        `${dir} holds a cluster intermediate, which cannot issue another CA; use the root directory`,
      );
    }
    const ca = await issueIntermediate(parent.ca, {
      cluster,
      ...(ttlMs ? { ttlMs } : {}),
      ...(keyType ? { keyType } : {}),
    });
    const files = [
      { path: outPath(out, CLUSTER_FILES.cert), content: ca.chainPem },
      { path: outPath(out, CLUSTER_FILES.key), content: ca.keyPem, secret: true },
      { path: outPath(out, CLUSTER_FILES.bundle), content: parent.bundle.toPem() },
      { path: outPath(out, CLUSTER_FILES.meta), content: caMetaJson(ca) },
    ];
    writeFilesAtomically(files, { force: values.force === true });
    reportWritten(
      ctx,
      `intermediate for cluster ${cluster} issued`,
      ca,
      files.map((f) => f.path),
      { roots: parent.bundle.size },
    );
    return 0;
  },
};
