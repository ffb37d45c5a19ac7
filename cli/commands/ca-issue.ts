import {
  IDENTITY_KINDS,
  type IdentityKind,
  issueLeaf,
  LEAF_FILES,
  loadCaDir,
  writeFilesAtomically,
} from '../../ca/index.ts';
import { MeshfedError } from '../../core/index.ts';
import { type Command, parseFlags, requireFlag } from '../command.ts';
import { outPath, parseDuration, parseKeyType, reportWritten } from './ca-shared.ts';

const NAME = 'ca issue';

export const caIssueCommand: Command = {
  path: ['ca', 'issue'],
  summary:
    'issue a gateway, federation or workload certificate from a cluster intermediate, or an admin one from the admin intermediate',
  usage: `Usage: meshfed ca issue --ca CDIR --kind gateway|federation|workload|admin [--name NAME]
         [--namespace NS --service-account SA] [--ttl 24h] [--key-type ...] [--dns NAME]... [--ip ADDR]... --out LDIR [--force]

Writes LDIR/cert.pem (leaf then intermediate), LDIR/key.pem (0600) and LDIR/bundle.crt. SPIFFE IDs:
  gateway    spiffe://<td>/cluster/<c>/gateway/<name>        serverAuth + clientAuth
  federation spiffe://<td>/cluster/<c>/federation            signs catalog entries (not a TLS identity)
  workload   spiffe://<td>/cluster/<c>/ns/<ns>/sa/<sa>        serverAuth + clientAuth
  admin      spiffe://<td>/admin/<name>                      clientAuth (for the admin API)
CDIR is a cluster directory (meshfed ca cluster); for --kind admin it is the admin intermediate's directory
(meshfed ca admin): no cluster intermediate may issue admin identities.`,
  async run(ctx) {
    const { values } = parseFlags(
      ctx,
      {
        ca: { type: 'string' },
        kind: { type: 'string' },
        name: { type: 'string' },
        namespace: { type: 'string' },
        'service-account': { type: 'string' },
        ttl: { type: 'string' },
        'key-type': { type: 'string' },
        dns: { type: 'string', multiple: true },
        ip: { type: 'string', multiple: true },
        out: { type: 'string' },
        force: { type: 'boolean' },
      },
      NAME,
    );
    const dir = requireFlag(values, 'ca', NAME);
    const kind = requireFlag(values, 'kind', NAME);
    const out = requireFlag(values, 'out', NAME);
    if (!IDENTITY_KINDS.includes(kind as IdentityKind)) {
      throw new MeshfedError(
        'MESHFED_USAGE',
        `${NAME}: --kind must be one of ${IDENTITY_KINDS.join(', ')} (got "${kind}")`,
      );
    }
    if ((kind === 'gateway' || kind === 'admin') && !values.name) {
      throw new MeshfedError('MESHFED_USAGE', `${NAME}: --name is required for --kind ${kind}`);
    }
    if (kind === 'workload' && (!values.namespace || !values['service-account'])) {
      throw new MeshfedError(
        'MESHFED_USAGE',
        `${NAME}: --namespace and --service-account are required for --kind workload`,
      );
    }
    const ttlMs = parseDuration(values.ttl, 'ttl', NAME);
    const keyType = parseKeyType(values['key-type'], NAME);
    const parent = await loadCaDir(dir);
    const wanted = kind === 'admin' ? 'admin' : 'cluster';
    if (parent.layout !== wanted) {
      const from =
        wanted === 'admin'
          ? 'the admin intermediate\'s directory, made by "meshfed ca admin"'
          : 'a cluster directory, made by "meshfed ca cluster"';
      throw new MeshfedError(
        parent.layout === 'root' ? 'MESHFED_USAGE' : 'MESHFED_CA_WRONG_ISSUER',
        `${dir} is ${parent.layout === 'root' ? 'a root directory' : `a ${parent.layout} intermediate's directory`}; issue --kind ${kind} certificates from ${from}`,
      );
    }
    const leaf = await issueLeaf(parent.ca, {
      kind: kind as IdentityKind,
      ...(values.name ? { name: values.name } : {}),
      ...(values.namespace ? { namespace: values.namespace } : {}),
      ...(values['service-account'] ? { serviceAccount: values['service-account'] } : {}),
      ...(ttlMs ? { ttlMs } : {}),
      ...(keyType ? { keyType } : {}),
      ...(values.dns ? { dnsNames: values.dns } : {}),
      ...(values.ip ? { ipAddresses: values.ip } : {}),
    });
    const files = [
      { path: outPath(out, LEAF_FILES.cert), content: leaf.chainPem },
      { path: outPath(out, LEAF_FILES.key), content: leaf.keyPem, secret: true },
      { path: outPath(out, LEAF_FILES.bundle), content: parent.bundle.toPem() },
    ];
    writeFilesAtomically(files, { force: values.force === true });
    reportWritten(
      ctx,
      `${kind} certificate issued`,
      leaf,
      files.map((f) => f.path),
      { serial: leaf.serial },
    );
    return 0;
  },
};
