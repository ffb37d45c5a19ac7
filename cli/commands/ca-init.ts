import {
  caMetaJson,
  createRoot,
  loadCa,
  readInputFile,
  readKeyFile,
  ROOT_FILES,
  TrustBundle,
  writeFilesAtomically,
} from '../../ca/index.ts';
import { MeshfedError } from '../../core/index.ts';
import { type Command, parseFlags, requireFlag } from '../command.ts';
import { outPath, parseDuration, parseKeyType, readPassphraseFile, reportWritten } from './ca-shared.ts';

const NAME = 'ca init';

export const caInitCommand: Command = {
  path: ['ca', 'init'],
  summary: 'create the federation root CA, or bring your own root or intermediate',
  usage: `Usage: meshfed ca init --trust-domain TD --out DIR [--key-type ecdsa-p256|rsa-2048|rsa-3072] [--ttl 10y] [--force]
       meshfed ca init --trust-domain TD --out DIR --from-cert CA.crt --from-key CA.key [--passphrase-file FILE] [--bundle ROOTS.crt]

Writes DIR/root.crt, DIR/root.key (PKCS#8, mode 0600), DIR/bundle.crt (the trust bundle) and DIR/ca.json.
With --from-cert/--from-key an existing CA is used instead (RSA or ECDSA; PKCS#8, PKCS#1 or SEC1 keys, encrypted
with --passphrase-file). CA.crt may hold the CA followed by its issuers; for an intermediate give its root(s) in
CA.crt or with --bundle. The key is stored unencrypted as PKCS#8, mode 0600: keep DIR offline.`,
  async run(ctx) {
    const { values } = parseFlags(
      ctx,
      {
        'trust-domain': { type: 'string' },
        out: { type: 'string' },
        'key-type': { type: 'string' },
        ttl: { type: 'string' },
        'common-name': { type: 'string' },
        'from-cert': { type: 'string' },
        'from-key': { type: 'string' },
        'passphrase-file': { type: 'string' },
        bundle: { type: 'string' },
        force: { type: 'boolean' },
      },
      NAME,
    );
    const trustDomain = requireFlag(values, 'trust-domain', NAME);
    const out = requireFlag(values, 'out', NAME);
    const fromCert = values['from-cert'];
    const fromKey = values['from-key'];
    if ((fromCert === undefined) !== (fromKey === undefined)) {
      throw new MeshfedError('MESHFED_USAGE', `${NAME}: --from-cert and --from-key go together`);
    }
    let ca: Awaited<ReturnType<typeof createRoot>>;
    if (fromCert !== undefined && fromKey !== undefined) {
      if (values['key-type'] !== undefined || values.ttl !== undefined) {
        throw new MeshfedError(
          'MESHFED_USAGE',
          `${NAME}: --key-type and --ttl do not apply to a CA brought with --from-cert`,
        );
      }
      const passphrase = readPassphraseFile(values['passphrase-file']);
      ca = await loadCa({
        certPem: readInputFile(fromCert),
        keyPem: readKeyFile(fromKey),
        trustDomain,
        certName: fromCert,
        keyName: fromKey,
        ...(passphrase === undefined ? {} : { passphrase }),
      });
      if (values.bundle !== undefined)
        ca.bundlePem = TrustBundle.fromPem(readInputFile(values.bundle), { what: values.bundle }).toPem();
      if (!ca.bundlePem) {
        throw new MeshfedError(
          'MESHFED_USAGE',
          `${fromCert} is an intermediate and its root is not in the file; append the root to it or pass --bundle ROOTS.crt`,
        );
      }
    } else {
      const keyType = parseKeyType(values['key-type'], NAME);
      const ttlMs = parseDuration(values.ttl, 'ttl', NAME);
      ca = await createRoot({
        trustDomain,
        ...(keyType ? { keyType } : {}),
        ...(ttlMs ? { ttlMs } : {}),
        ...(values['common-name'] ? { commonName: values['common-name'] } : {}),
      });
    }
    const files = [
      // for a brought intermediate, root.crt carries it and its issuers below the root, so chains stay complete
      { path: outPath(out, ROOT_FILES.cert), content: ca.chainPem },
      { path: outPath(out, ROOT_FILES.key), content: ca.keyPem, secret: true },
      { path: outPath(out, ROOT_FILES.bundle), content: ca.bundlePem! },
      { path: outPath(out, ROOT_FILES.meta), content: caMetaJson(ca) },
    ];
    writeFilesAtomically(files, { force: values.force === true });
    reportWritten(
      ctx,
      fromCert ? 'CA loaded' : 'root CA created',
      ca,
      files.map((f) => f.path),
      {
        'trust domain': trustDomain,
      },
    );
    return 0;
  },
};
