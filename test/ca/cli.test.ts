import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { TrustBundle, verify } from '../../ca/index.ts';
import { runCli } from '../../cli/main.ts';
import { openssl, opensslVerify, scratchDir } from './helpers.ts';

const scratch = scratchDir('meshfed-ca-cli-');
afterAll(() => scratch.cleanup());
const p = (...parts: string[]): string => join(scratch.dir, ...parts);

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => {
    out += d;
  });
  stderr.on('data', (d) => {
    err += d;
  });
  const code = await runCli(argv, { stdout, stderr });
  return { code, out, err };
}

/** A refused command: exit 1, one line on stderr that names `mentions`, and `dir` left absent or unchanged. */
async function refused(argv: string[], mentions: string, dir?: string): Promise<string> {
  const before = dir && existsSync(dir) ? readdirSync(dir).sort() : undefined;
  const r = await cli(...argv, '--json');
  expect(r.code).toBe(1);
  const { error } = JSON.parse(r.err) as { error: { code: string; message: string } };
  expect(error.message).toContain(mentions);
  const human = await cli(...argv);
  expect(human.err.trim().split('\n')).toHaveLength(1);
  if (dir) expect(existsSync(dir) ? readdirSync(dir).sort() : undefined).toEqual(before);
  return error.code;
}

describe('meshfed ca: the documented forms', () => {
  test('init → cluster → issue every kind; files are PEM that openssl verifies, keys 0600', async () => {
    expect((await cli('ca', 'init', '--trust-domain', 'mesh.example', '--out', p('root'))).code).toBe(0);
    expect(statSync(p('root', 'root.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(p('root', 'root.key'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const c = await cli(
      'ca',
      'cluster',
      '--ca',
      p('root'),
      '--cluster',
      'east',
      '--out',
      p('east'),
      '--json',
    );
    expect(c.code).toBe(0);
    expect(JSON.parse(c.out).certificate.spiffeId).toBe('spiffe://mesh.example/cluster/east');
    for (const f of ['ca.crt', 'ca.key', 'bundle.crt']) expect(existsSync(p('east', f))).toBe(true);
    const bundle = TrustBundle.fromPem(readFileSync(p('east', 'bundle.crt'), 'utf8'));
    const kinds: [string, string[]][] = [
      ['gateway', ['--name', 'gw-1', '--ttl', '12h', '--dns', 'gw-1.east.example', '--ip', '127.0.0.1']],
      ['federation', []],
      ['workload', ['--namespace', 'shop', '--service-account', 'orders']],
      ['admin', ['--name', 'alice']],
    ];
    // admin identities come from the admin intermediate, which no cluster holds
    const a = await cli('ca', 'admin', '--ca', p('root'), '--out', p('admins'), '--json');
    expect(a.code).toBe(0);
    expect(JSON.parse(a.out).certificate.spiffeId).toBe('spiffe://mesh.example/admin');
    // [issuer directory, kind, what the refusal points to]: each intermediate issues its own kinds only
    for (const [dir, kind, hint] of [
      ['east', 'admin', 'meshfed ca admin'],
      ['admins', 'gateway', 'meshfed ca cluster'],
    ] as const) {
      const argv = ['ca', 'issue', '--ca', p(dir), '--kind', kind, '--name', 'eve', '--out', p('eve')];
      expect(await refused(argv, hint, p('eve'))).toBe('MESHFED_CA_WRONG_ISSUER');
    }
    for (const [kind, extra] of kinds) {
      const issuer = kind === 'admin' ? p('admins') : p('east');
      const r = await cli('ca', 'issue', '--ca', issuer, '--kind', kind, ...extra, '--out', p(kind));
      expect({ kind, code: r.code, err: r.err }).toEqual({ kind, code: 0, err: '' });
      expect(statSync(p(kind, 'key.pem')).mode & 0o777).toBe(0o600);
      const chain = readFileSync(p(kind, 'cert.pem'), 'utf8');
      expect(verify(chain, bundle).kind).toBe(kind);
      const v = openssl([
        'verify',
        '-CAfile',
        p('east', 'bundle.crt'),
        '-untrusted',
        join(issuer, 'ca.crt'),
        p(kind, 'cert.pem'),
      ]);
      expect(v.status).toBe(0);
    }
    const gw = verify(readFileSync(p('gateway', 'cert.pem'), 'utf8'), bundle);
    expect(gw.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(12 * 3_600_000 + 1000);
    const i = await cli('ca', 'inspect', p('gateway', 'cert.pem'), '--json');
    const doc = JSON.parse(i.out) as {
      certificates: { spiffeId: string; dnsNames: string[]; ca: boolean }[];
    };
    expect(doc.certificates.map((x) => x.spiffeId)).toEqual([
      'spiffe://mesh.example/cluster/east/gateway/gw-1',
      'spiffe://mesh.example/cluster/east',
    ]);
    expect(doc.certificates[0]!.dnsNames).toEqual(['gw-1.east.example']);
    const human = await cli('ca', 'inspect', p('gateway', 'cert.pem'));
    expect(human.out).toMatch(/spiffe id\s+spiffe:\/\/mesh\.example\/cluster\/east\/gateway\/gw-1/);
    expect(human.out).not.toContain('PRIVATE');
  });

  test('rsa key types and an existing file without --force', async () => {
    expect(
      (await cli('ca', 'init', '--trust-domain', 'mesh.example', '--out', p('rsa'), '--key-type', 'rsa-2048'))
        .code,
    ).toBe(0);
    const i = await cli('ca', 'inspect', p('rsa', 'root.crt'), '--json');
    expect(JSON.parse(i.out).certificates[0].keyType).toBe('rsa-2048');
    const before = readFileSync(p('rsa', 'root.key'), 'utf8');
    expect(
      await refused(['ca', 'init', '--trust-domain', 'mesh.example', '--out', p('rsa')], 'root.crt'),
    ).toBe('MESHFED_FILE_EXISTS');
    expect(readFileSync(p('rsa', 'root.key'), 'utf8')).toBe(before);
    expect(
      (await cli('ca', 'init', '--trust-domain', 'mesh.example', '--out', p('rsa'), '--force')).code,
    ).toBe(0);
    expect(readFileSync(p('rsa', 'root.key'), 'utf8')).not.toBe(before);
    expect(
      (await cli('ca', 'init', '--trust-domain', 'mesh.example', '--out', p('x'), '--key-type', 'dsa')).code,
    ).toBe(2);
  });
});

describe('meshfed ca init --from-cert: bring your own CA', () => {
  beforeAll(() => {
    for (const args of [
      ['genrsa', '-traditional', '-aes256', '-passout', 'pass:s3cret', '-out', p('corp.key'), '2048'],
      [
        'req',
        '-x509',
        '-new',
        '-key',
        p('corp.key'),
        '-passin',
        'pass:s3cret',
        '-subj',
        '/CN=Corp Root',
        '-days',
        '365',
        '-addext',
        'basicConstraints=critical,CA:true',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
        '-out',
        p('corp.crt'),
      ],
      ['genrsa', '-out', p('other.key'), '2048'],
    ]) {
      const r = openssl(args);
      if (r.status !== 0) throw new Error(r.stderr);
    }
    chmodSync(p('corp.key'), 0o600);
    chmodSync(p('other.key'), 0o600);
    writeFileSync(p('pass.txt'), 's3cret\n');
    writeFileSync(p('wrong.txt'), 'nope\n');
  });

  test('an openssl RSA root with an encrypted PKCS#1 key works end to end', async () => {
    const r = await cli(
      'ca',
      'init',
      '--trust-domain',
      'mesh.example',
      '--out',
      p('byo'),
      '--from-cert',
      p('corp.crt'),
      '--from-key',
      p('corp.key'),
      '--passphrase-file',
      p('pass.txt'),
    );
    expect(r.code).toBe(0);
    expect(readFileSync(p('byo', 'root.key'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(
      (await cli('ca', 'cluster', '--ca', p('byo'), '--cluster', 'west', '--out', p('byo-west'))).code,
    ).toBe(0);
    expect(
      (
        await cli(
          'ca',
          'issue',
          '--ca',
          p('byo-west'),
          '--kind',
          'gateway',
          '--name',
          'gw',
          '--out',
          p('byo-gw'),
        )
      ).code,
    ).toBe(0);
    const chain = readFileSync(p('byo-gw', 'cert.pem'), 'utf8');
    expect(verify(chain, TrustBundle.fromPem(readFileSync(p('corp.crt'), 'utf8'))).cluster).toBe('west');
    expect(
      opensslVerify(
        scratch.dir,
        readFileSync(p('corp.crt'), 'utf8'),
        readFileSync(p('byo-west', 'ca.crt'), 'utf8'),
        chain,
      ).status,
    ).toBe(0);
  });

  test('bad input gets one line naming the file, exit 1, and no files', async () => {
    const init = ['ca', 'init', '--trust-domain', 'mesh.example', '--out', p('bad')];
    const from = ['--from-cert', p('corp.crt'), '--from-key', p('corp.key')];
    expect(await refused([...init, ...from, '--passphrase-file', p('wrong.txt')], 'corp.key', p('bad'))).toBe(
      'MESHFED_CA_BAD_PASSPHRASE',
    );
    expect(await refused([...init, ...from], 'corp.key', p('bad'))).toBe('MESHFED_CA_BAD_PASSPHRASE');
    expect(
      await refused(
        [...init, '--from-cert', p('corp.crt'), '--from-key', p('other.key')],
        'other.key',
        p('bad'),
      ),
    ).toBe('MESHFED_CA_KEY_MISMATCH');
    writeFileSync(
      p('junk.crt'),
      '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n',
    );
    expect(
      await refused(
        [...init, '--from-cert', p('junk.crt'), '--from-key', p('other.key')],
        'junk.crt',
        p('bad'),
      ),
    ).toBe('MESHFED_CA_MALFORMED');
    expect(
      await refused(
        [...init, '--from-cert', p('gateway', 'cert.pem'), '--from-key', p('gateway', 'key.pem')],
        'cert.pem',
        p('bad'),
      ),
    ).toBe('MESHFED_CA_NOT_A_CA');
    expect(
      await refused(
        ['ca', 'cluster', '--ca', p('root'), '--cluster', 'East_1', '--out', p('bad')],
        'East_1',
        p('bad'),
      ),
    ).toBe('MESHFED_CA_INVALID_NAME');
    writeFileSync(p('a-file'), 'x');
    expect(
      await refused(['ca', 'init', '--trust-domain', 'mesh.example', '--out', p('a-file', 'sub')], 'a-file'),
    ).toBe('MESHFED_FILE_UNWRITABLE');
    chmodSync(p('root', 'root.key'), 0o644);
    expect(
      await refused(
        ['ca', 'cluster', '--ca', p('root'), '--cluster', 'west', '--out', p('bad')],
        'root.key',
        p('bad'),
      ),
    ).toBe('MESHFED_FILE_INSECURE');
    chmodSync(p('root', 'root.key'), 0o600);
    expect(existsSync(p('bad'))).toBe(false);
  });
});

test('rotate and bundle: new root trusted beside the old, then the old retired', async () => {
  expect((await cli('ca', 'init', '--trust-domain', 'mesh.example', '--out', p('r1'))).code).toBe(0);
  expect((await cli('ca', 'cluster', '--ca', p('r1'), '--cluster', 'east', '--out', p('r1-east'))).code).toBe(
    0,
  );
  expect(
    (
      await cli(
        'ca',
        'issue',
        '--ca',
        p('r1-east'),
        '--kind',
        'gateway',
        '--name',
        'gw',
        '--out',
        p('old-gw'),
      )
    ).code,
  ).toBe(0);
  const step1 = await cli('ca', 'rotate', '--ca', p('r1'), '--out', p('r2'), '--json');
  expect(step1.code).toBe(0);
  const newFp = JSON.parse(step1.out).newRoot as string;
  // step 1 on a cluster: its bundle gains the new root
  const add = await cli('ca', 'bundle', 'add', p('r1-east', 'bundle.crt'), p('r2', 'root.crt'), '--json');
  expect(JSON.parse(add.out).roots).toHaveLength(2);
  // step 2: re-issue the intermediate from the new root, then leaves
  expect(
    (await cli('ca', 'cluster', '--ca', p('r2'), '--cluster', 'east', '--out', p('r1-east'), '--force')).code,
  ).toBe(0);
  expect(
    (
      await cli(
        'ca',
        'issue',
        '--ca',
        p('r1-east'),
        '--kind',
        'gateway',
        '--name',
        'gw',
        '--out',
        p('new-gw'),
      )
    ).code,
  ).toBe(0);
  const overlap = TrustBundle.fromPem(readFileSync(p('r1-east', 'bundle.crt'), 'utf8'));
  expect(overlap.size).toBe(2);
  const oldChain = readFileSync(p('old-gw', 'cert.pem'), 'utf8');
  const newChain = readFileSync(p('new-gw', 'cert.pem'), 'utf8');
  const oldFp = verify(oldChain, overlap).chainRootFingerprint256;
  expect(verify(newChain, overlap).chainRootFingerprint256).toBe(newFp);
  // step 3
  const retire = await cli('ca', 'rotate', '--ca', p('r2'), '--retire', p('r1'), '--json');
  expect(JSON.parse(retire.out).retired).toBe(oldFp);
  const rm = await cli(
    'ca',
    'bundle',
    'remove',
    p('r1-east', 'bundle.crt'),
    oldFp.toLowerCase().replaceAll(':', ''),
  );
  expect(rm.code).toBe(0);
  const after = TrustBundle.fromPem(readFileSync(p('r1-east', 'bundle.crt'), 'utf8'));
  expect(() => verify(oldChain, after)).toThrow(expect.objectContaining({ code: 'MESHFED_CA_UNKNOWN_ROOT' }));
  expect(verify(newChain, after).name).toBe('gw');
  expect((await cli('ca', 'bundle', 'remove', p('r1-east', 'bundle.crt'), newFp)).code).toBe(2); // last root needs --force
  const show = await cli('ca', 'bundle', 'show', p('r1-east', 'bundle.crt'));
  expect(show.out).toContain(newFp);
});

test('the real bin: meshfed ca init writes the root and exits 0', () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const node = join(root, 'node_modules', '.bin', 'node');
  const r = spawnSync(
    node,
    [join(root, 'bin', 'meshfed.js'), 'ca', 'init', '--trust-domain', 'mesh.example', '--out', p('bin-root')],
    {
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(statSync(p('bin-root', 'root.key')).mode & 0o777).toBe(0o600);
  const again = spawnSync(
    node,
    [join(root, 'bin', 'meshfed.js'), 'ca', 'init', '--trust-domain', 'mesh.example', '--out', p('bin-root')],
    {
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  expect(again.status).toBe(1);
  expect(again.stderr).toMatch(/^meshfed: .*root\.crt already exists; pass --force/);
});
