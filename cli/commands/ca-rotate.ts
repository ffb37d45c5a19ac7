import { join } from 'node:path';
import {
  caMetaJson,
  createRoot,
  loadCaDir,
  ROOT_FILES,
  TrustBundle,
  writeFilesAtomically,
} from '../../ca/index.ts';
import { MeshfedError } from '../../core/index.ts';
import { type Command, parseFlags, requireFlag, writeJson } from '../command.ts';
import { parseDuration, parseKeyType } from './ca-shared.ts';

const NAME = 'ca rotate';

export const caRotateCommand: Command = {
  path: ['ca', 'rotate'],
  summary: 'rotate the root: create the next root (step 1) or retire the old one (step 3)',
  usage: `Usage: meshfed ca rotate --ca DIR --out NEWDIR [--key-type ...] [--ttl 10y]     step 1: new root, both trusted
       meshfed ca rotate --ca NEWDIR --retire OLDDIR                               step 3: stop trusting the old root

A root rotation never breaks a connection when done in three steps (see docs/ca.md):
  1. create the new root; DIR/bundle.crt and NEWDIR/bundle.crt then hold both roots. Distribute that bundle to
     every cluster (meshfed ca bundle add CDIR/bundle.crt NEWDIR/root.crt) and let gateways reload it.
  2. re-issue every cluster intermediate from NEWDIR (meshfed ca cluster --ca NEWDIR --cluster C --out CDIR --force);
     leaves renew from the new intermediates; old and new leaves verify everywhere during the overlap.
  3. when no certificate under the old root is in use any more (its last leaf has expired), retire the old root and
     remove it from every bundle (meshfed ca bundle remove CDIR/bundle.crt FINGERPRINT).`,
  async run(ctx) {
    const { values } = parseFlags(
      ctx,
      {
        ca: { type: 'string' },
        out: { type: 'string' },
        retire: { type: 'string' },
        'key-type': { type: 'string' },
        ttl: { type: 'string' },
        force: { type: 'boolean' },
      },
      NAME,
    );
    const dir = requireFlag(values, 'ca', NAME);
    if ((values.out === undefined) === (values.retire === undefined)) {
      throw new MeshfedError(
        'MESHFED_USAGE',
        `${NAME}: give either --out NEWDIR (step 1) or --retire OLDDIR (step 3)`,
      );
    }
    const current = await loadCaDir(dir);
    if (current.layout !== 'root')
      throw new MeshfedError('MESHFED_USAGE', `${NAME}: ${dir} is not a root directory`);

    if (values.out !== undefined) {
      const keyType = parseKeyType(values['key-type'], NAME);
      const ttlMs = parseDuration(values.ttl, 'ttl', NAME);
      const next = await createRoot({
        trustDomain: current.ca.trustDomain,
        keyType: keyType ?? (current.ca.keyType.startsWith('rsa') ? 'rsa-3072' : 'ecdsa-p256'),
        ...(ttlMs ? { ttlMs } : {}),
      });
      const both = new TrustBundle(current.bundle.roots());
      both.add(next.certPem);
      // NEWDIR is new (never overwritten without --force); DIR's bundle is rewritten on purpose: that is step 1
      writeFilesAtomically(
        [
          { path: join(values.out, ROOT_FILES.cert), content: next.certPem },
          { path: join(values.out, ROOT_FILES.key), content: next.keyPem, secret: true },
          { path: join(values.out, ROOT_FILES.bundle), content: both.toPem() },
          { path: join(values.out, ROOT_FILES.meta), content: caMetaJson(next) },
        ],
        { force: values.force === true },
      );
      writeFilesAtomically([{ path: current.bundleFile, content: both.toPem() }], { force: true });
      const fp = both.roots().at(-1)!.fingerprint256;
      const steps = [
        `new root ${fp} written to ${values.out}; ${current.bundleFile} and ${join(values.out, ROOT_FILES.bundle)} now trust both roots`,
        `next (step 1, every cluster): meshfed ca bundle add CDIR/bundle.crt ${join(values.out, ROOT_FILES.cert)}`,
        `then (step 2, every cluster): meshfed ca cluster --ca ${values.out} --cluster NAME --out CDIR --force`,
        `last (step 3, once old leaves expired): meshfed ca rotate --ca ${values.out} --retire ${dir}`,
      ];
      if (ctx.json) writeJson(ctx, { step: 1, newRoot: fp, roots: both.size, next: steps.slice(1) });
      else ctx.stdout.write(`${steps.join('\n')}\n`);
      return 0;
    }

    const old = await loadCaDir(values.retire!);
    const oldFp =
      old.bundle.roots().find((r) => r.toString() === old.ca.certPem)?.fingerprint256 ??
      old.bundle.roots()[0]!.fingerprint256;
    const bundle = new TrustBundle(current.bundle.roots());
    if (!bundle.has(oldFp))
      throw new MeshfedError(
        'MESHFED_USAGE',
        `${current.bundleFile} does not trust the root of ${values.retire}; nothing to retire`,
      );
    if (bundle.size === 1)
      throw new MeshfedError(
        'MESHFED_USAGE',
        `${NAME}: the root of ${values.retire} is the only root of ${dir}`,
      );
    bundle.remove(oldFp);
    writeFilesAtomically([{ path: current.bundleFile, content: bundle.toPem() }], { force: true });
    const next = `next (every cluster): meshfed ca bundle remove CDIR/bundle.crt ${oldFp}`;
    if (ctx.json) writeJson(ctx, { step: 3, retired: oldFp, roots: bundle.size, next: [next] });
    else ctx.stdout.write(`retired root ${oldFp} from ${current.bundleFile}\n${next}\n`);
    return 0;
  },
};
