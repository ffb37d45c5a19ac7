import { setExportedInFile } from '../../discovery/index.ts';
import { MeshfedError } from '../../core/index.ts';
import type { Command, CommandContext } from '../command.ts';
import { parseFlags, requireFlag, writeJson } from '../command.ts';
import { loadDaemonConfig } from '../daemon-config.ts';
import { parseServiceArg } from './admin-verbs.ts';

async function setExport(ctx: CommandContext, verb: 'export' | 'unexport'): Promise<number> {
  const { values, positionals } = parseFlags(
    ctx,
    { config: { type: 'string', short: 'c' }, file: { type: 'string' } },
    verb,
    true,
  );
  const ref = parseServiceArg(positionals[0]);
  let file = values.file;
  if (!file) {
    const loaded = loadDaemonConfig(requireFlag(values, 'config', verb));
    const statics = loaded.config.discovery.sources.filter((s) => s.type === 'static');
    if (statics.length === 0) {
      throw new MeshfedError(
        'MESHFED_USAGE',
        `${verb}: ${loaded.file} has no static discovery source; export Consul services with the meshfed-export tag and Kubernetes services with the meshfed.io/export annotation or a ServiceExport`,
      );
    }
    if (statics.length > 1) {
      throw new MeshfedError(
        'MESHFED_USAGE',
        `${verb}: ${loaded.file} has several static sources; pick one with --file`,
      );
    }
    file = loaded.path((statics[0] as { file: string }).file);
  }
  const changed = setExportedInFile(file, ref, verb === 'export');
  const result = { service: `${ref.name}.${ref.namespace}`, exported: verb === 'export', changed, file };
  if (ctx.json) writeJson(ctx, result);
  else
    ctx.stdout.write(
      changed
        ? `${result.service}: ${verb}ed in ${file}; the running gateway picks the change up by itself\n`
        : `${result.service}: already ${verb === 'export' ? 'exported' : 'not exported'}; nothing changed\n`,
    );
  return 0;
}

export const exportCommand: Command = {
  path: ['export'],
  summary: 'export a service of the static source to the federation',
  usage: 'meshfed export <name.namespace> (--config gateway.yaml | --file services.yaml) [--json]',
  run: (ctx) => setExport(ctx, 'export'),
};

export const unexportCommand: Command = {
  path: ['unexport'],
  summary: 'stop exporting a service of the static source',
  usage: 'meshfed unexport <name.namespace> (--config gateway.yaml | --file services.yaml) [--json]',
  run: (ctx) => setExport(ctx, 'unexport'),
};
