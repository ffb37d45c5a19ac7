import { type ParseArgsConfig, parseArgs } from 'node:util';
import { MeshfedError } from '../core/index.ts';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** What every command gets: parsed flags, positional words, and where to write. */
export interface CommandContext {
  argv: string[];
  json: boolean;
  debug: boolean;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** aborted on SIGINT/SIGTERM for long-running commands */
  signal: AbortSignal;
}

export interface Command {
  /** the words that select it, e.g. ["ca", "init"] */
  path: string[];
  summary: string;
  usage: string;
  run(ctx: CommandContext): Promise<unknown>;
}

/**
 * A command whose implementation is imported only when it runs: `meshfed status` must not pay for
 * loading Kubernetes, OpenTelemetry and the CA libraries it does not use.
 */
export function lazyCommand(path: string[], summary: string, load: () => Promise<Command>): Command {
  let loaded: Command | undefined;
  const get = async () => {
    loaded ??= await load();
    return loaded;
  };
  return {
    path,
    summary,
    get usage() {
      return loaded?.usage ?? `meshfed ${path.join(' ')} --help`;
    },
    async run(ctx) {
      return (await get()).run(ctx);
    },
    load: get,
  } as Command & { load: () => Promise<Command> };
}

/** Parses a command's own flags; unknown flags are usage errors (exit 2) that name the flag. */
export function parseFlags<T extends OptionSpec>(
  ctx: CommandContext,
  options: T,
  command: string,
  allowPositionals = false,
) {
  try {
    return parseArgs({
      args: ctx.argv,
      options: {
        ...options,
        json: { type: 'boolean' },
        debug: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      allowPositionals,
      strict: true,
    });
  } catch (err) {
    throw new MeshfedError(
      'MESHFED_USAGE',
      `${command}: ${(err as Error).message.split('\n')[0]} (see: meshfed ${command} --help)`,
      { cause: err },
    );
  }
}

/** A required string flag, or a usage error naming it. */
export function requireFlag(values: Record<string, unknown>, name: string, command: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') {
    throw new MeshfedError(
      'MESHFED_USAGE',
      `${command}: --${name} is required (see: meshfed ${command} --help)`,
    );
  }
  return v;
}

export function writeJson(ctx: CommandContext, value: unknown): void {
  ctx.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Renders rows as an aligned text table for humans. */
export function renderTable(headers: string[], rows: (string | number | boolean | undefined)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === undefined ? '-' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return `${cells
    .map((r) =>
      r
        .map((c, i) => (c ?? '').padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}
