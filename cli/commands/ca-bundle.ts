import { describeCertificate, readInputFile, TrustBundle, writeFilesAtomically } from '../../ca/index.ts';
import { MeshfedError } from '../../core/index.ts';
import { type Command, type CommandContext, parseFlags, renderTable, writeJson } from '../command.ts';

function show(ctx: CommandContext, file: string, bundle: TrustBundle): void {
  const roots = bundle.roots().map(describeCertificate);
  if (ctx.json) {
    writeJson(ctx, { file, trustDomain: bundle.trustDomain, roots });
    return;
  }
  ctx.stdout.write(
    renderTable(
      ['fingerprint', 'subject', 'not after'],
      roots.map((r) => [r.fingerprint256, r.subject, r.notAfter]),
    ),
  );
}

function load(file: string): TrustBundle {
  return TrustBundle.fromPem(readInputFile(file), { what: file });
}

export const caBundleShowCommand: Command = {
  path: ['ca', 'bundle', 'show'],
  summary: 'list the roots in a trust bundle',
  usage: 'Usage: meshfed ca bundle show BUNDLE.crt [--json]',
  async run(ctx) {
    const { positionals } = parseFlags(ctx, {}, 'ca bundle show', true);
    if (positionals.length !== 1)
      throw new MeshfedError('MESHFED_USAGE', 'ca bundle show: give exactly one BUNDLE.crt');
    show(ctx, positionals[0]!, load(positionals[0]!));
    return 0;
  },
};

export const caBundleAddCommand: Command = {
  path: ['ca', 'bundle', 'add'],
  summary: 'add a root to a trust bundle (step 1 of a root rotation)',
  usage:
    'Usage: meshfed ca bundle add BUNDLE.crt ROOT.crt [--json]\n\nRewrites BUNDLE.crt atomically; a root already present changes nothing.',
  async run(ctx) {
    const { positionals } = parseFlags(ctx, {}, 'ca bundle add', true);
    if (positionals.length !== 2)
      throw new MeshfedError('MESHFED_USAGE', 'ca bundle add: give BUNDLE.crt and ROOT.crt');
    const [file, rootFile] = positionals as [string, string];
    const bundle = load(file);
    const before = bundle.size;
    bundle.add(readInputFile(rootFile));
    if (
      bundle
        .roots()
        .slice(before)
        .some((r) => !describeCertificate(r).selfSigned)
    ) {
      throw new MeshfedError(
        'MESHFED_CA_NOT_A_CA',
        `${rootFile} is not a self-signed root; a trust bundle holds roots only`,
      );
    }
    writeFilesAtomically([{ path: file, content: bundle.toPem() }], { force: true });
    show(ctx, file, bundle);
    return 0;
  },
};

export const caBundleRemoveCommand: Command = {
  path: ['ca', 'bundle', 'remove'],
  summary: 'remove a root from a trust bundle by fingerprint (last step of a root rotation)',
  usage: `Usage: meshfed ca bundle remove BUNDLE.crt FINGERPRINT [--force] [--json]

FINGERPRINT is the SHA-256 fingerprint "meshfed ca bundle show" prints (colons and case do not matter).
Removing the last root would make every certificate untrusted: that needs --force.`,
  async run(ctx) {
    const { values, positionals } = parseFlags(ctx, { force: { type: 'boolean' } }, 'ca bundle remove', true);
    if (positionals.length !== 2)
      throw new MeshfedError('MESHFED_USAGE', 'ca bundle remove: give BUNDLE.crt and FINGERPRINT');
    const [file, fp] = positionals as [string, string];
    const bundle = load(file);
    if (!bundle.has(fp))
      throw new MeshfedError('MESHFED_USAGE', `${file} holds no root with fingerprint ${fp}`);
    if (bundle.size === 1 && !values.force) {
      throw new MeshfedError(
        'MESHFED_USAGE',
        `${file}: that is the last root; removing it distrusts everything (pass --force)`,
      );
    }
    bundle.remove(fp);
    writeFilesAtomically([{ path: file, content: bundle.toPem() }], { force: true });
    show(ctx, file, bundle);
    return 0;
  },
};
