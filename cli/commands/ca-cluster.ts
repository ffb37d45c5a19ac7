import {
  type CaMaterial,
  CLUSTER_FILES,
  caMetaJson,
  issueAdminIntermediate,
  issueIntermediate,
  type KeyType,
  loadCaDir,
  writeFilesAtomically,
} from '../../ca/index.ts';
import { MeshfedError } from '../../core/index.ts';
import { type Command, type CommandContext, parseFlags, requireFlag } from '../command.ts';
import { outPath, parseDuration, parseKeyType, readPassphraseFile, reportWritten } from './ca-shared.ts';

const FLAGS = {
  ca: { type: 'string' },
  out: { type: 'string' },
  ttl: { type: 'string' },
  'key-type': { type: 'string' },
  'passphrase-file': { type: 'string' },
  force: { type: 'boolean' },
} as const;

/**
 * Issues an intermediate from the root directory given with --ca and writes its directory (--out): what
 * `ca cluster` and `ca admin` share.
 */
async function writeIntermediate(
  ctx: CommandContext,
  name: string,
  values: { [K in keyof typeof FLAGS]?: (typeof FLAGS)[K]['type'] extends 'boolean' ? boolean : string },
  what: string,
  issue: (parent: CaMaterial, o: { ttlMs?: number; keyType?: KeyType }) => Promise<CaMaterial>,
): Promise<number> {
  const dir = requireFlag(values, 'ca', name);
  const out = requireFlag(values, 'out', name);
  const ttlMs = parseDuration(values.ttl, 'ttl', name);
  const keyType = parseKeyType(values['key-type'], name);
  const passphrase = readPassphraseFile(values['passphrase-file']);
  const parent = await loadCaDir(dir, passphrase === undefined ? {} : { passphrase });
  if (parent.layout !== 'root') {
    throw new MeshfedError(
      'MESHFED_CA_NOT_A_CA',
      `${dir} holds an intermediate (${parent.layout}), which cannot issue another CA; use the root directory`,
    );
  }
  const ca = await issue(parent.ca, { ...(ttlMs ? { ttlMs } : {}), ...(keyType ? { keyType } : {}) });
  const files = [
    { path: outPath(out, CLUSTER_FILES.cert), content: ca.chainPem },
    { path: outPath(out, CLUSTER_FILES.key), content: ca.keyPem, secret: true },
    { path: outPath(out, CLUSTER_FILES.bundle), content: parent.bundle.toPem() },
    { path: outPath(out, CLUSTER_FILES.meta), content: caMetaJson(ca) },
  ];
  writeFilesAtomically(files, { force: values.force === true });
  reportWritten(
    ctx,
    what,
    ca,
    files.map((f) => f.path),
    { roots: parent.bundle.size },
  );
  return 0;
}

export const caClusterCommand: Command = {
  path: ['ca', 'cluster'],
  summary: "issue a cluster's intermediate CA from the root",
  usage: `Usage: meshfed ca cluster --ca DIR --cluster NAME --out CDIR [--ttl 365d] [--key-type ...] [--force]

Issues the intermediate of one cluster (CA, pathLen 0, URI SAN spiffe://<td>/cluster/<NAME>) from the CA in DIR
(made by "meshfed ca init"). Writes CDIR/ca.crt, CDIR/ca.key (0600), CDIR/bundle.crt (every root) and CDIR/ca.json.
NAME must be a DNS label (lower-case letters, digits, '-').`,
  async run(ctx) {
    const NAME = 'ca cluster';
    const { values } = parseFlags(ctx, { ...FLAGS, cluster: { type: 'string' } }, NAME);
    const cluster = requireFlag(values, 'cluster', NAME);
    return writeIntermediate(ctx, NAME, values, `intermediate for cluster ${cluster} issued`, (parent, o) =>
      issueIntermediate(parent, { cluster, ...o }),
    );
  },
};

export const caAdminCommand: Command = {
  path: ['ca', 'admin'],
  summary: 'issue the admin intermediate CA (the only issuer of admin identities) from the root',
  usage: `Usage: meshfed ca admin --ca DIR --out ADIR [--ttl 365d] [--key-type ...] [--force]

Issues the admin intermediate (CA, pathLen 0, URI SAN spiffe://<td>/admin, bound to no cluster) from the root in
DIR. Only it may issue admin identities (spiffe://<td>/admin/<name>, for the admin API and federation-wide
policy), and it may issue nothing else: every gateway refuses an admin certificate from a cluster intermediate.
Writes ADIR/ca.crt, ADIR/ca.key (0600), ADIR/bundle.crt and ADIR/ca.json; then
meshfed ca issue --ca ADIR --kind admin --name NAME --out LDIR. Keep ADIR where operators' certificates are made.`,
  async run(ctx) {
    const NAME = 'ca admin';
    const { values } = parseFlags(ctx, FLAGS, NAME);
    return writeIntermediate(ctx, NAME, values, 'admin intermediate issued', issueAdminIntermediate);
  },
};
