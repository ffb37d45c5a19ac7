import { readFileSync } from 'node:fs';
import { MeshfedError, toMeshfedError } from '../core/index.ts';
import type { Command, CommandContext } from './command.ts';
import { COMMANDS } from './commands/index.ts';
import { projectFile } from './project-file.ts';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function version(): string {
  const pkg = JSON.parse(readFileSync(projectFile('package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

function helpText(commands: Command[]): string {
  const width = Math.max(...commands.map((c) => c.path.join(' ').length), 8);
  const lines = commands.map((c) => `  ${c.path.join(' ').padEnd(width)}  ${c.summary}`);
  return [
    'meshfed: multi-cluster service-mesh federation gateway',
    '',
    'Usage: meshfed <command> [flags]',
    '',
    'Commands:',
    ...lines,
    '',
    'Global flags:',
    '  --json      machine-readable output',
    '  --debug     print stack traces with errors',
    '  --help      help for a command',
    '  --version   print the version',
    '',
    'Exit codes: 0 ok, 1 failure, 2 usage error.',
    '',
  ].join('\n');
}

/** Finds the command whose path is the longest prefix of argv. */
function route(commands: Command[], argv: string[]): { command: Command; rest: string[] } | undefined {
  let best: Command | undefined;
  for (const c of commands) {
    if (c.path.every((w, i) => argv[i] === w) && (!best || c.path.length > best.path.length)) best = c;
  }
  return best ? { command: best, rest: argv.slice(best.path.length) } : undefined;
}

export interface RunOptions {
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  signal?: AbortSignal;
  commands?: Command[];
}

/** Runs the CLI and returns its exit code; never throws. */
export async function runCli(argv: string[], options: RunOptions = {}): Promise<number> {
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const commands = options.commands ?? COMMANDS;
  const debug = argv.includes('--debug');
  const json = argv.includes('--json');
  try {
    if (argv[0] === '--version' || argv[0] === 'version') {
      stdout.write(json ? `${JSON.stringify({ version: version() })}\n` : `meshfed ${version()}\n`);
      return EXIT_OK;
    }
    const words = argv.filter((a) => !a.startsWith('-'));
    if (argv.length === 0 || argv[0] === '--help' || argv[0] === 'help' || argv[0] === '-h') {
      const sub = argv[0] === 'help' ? route(commands, argv.slice(1)) : undefined;
      const subLoader = (sub?.command as { load?: () => Promise<Command> } | undefined)?.load;
      if (sub && subLoader) sub.command = await subLoader();
      stdout.write(sub ? `${sub.command.usage}\n` : helpText(commands));
      return EXIT_OK;
    }
    const found = route(commands, argv);
    if (!found) {
      const group = commands.filter((c) => c.path[0] === words[0]);
      if (group.length > 0) {
        if (argv.includes('--help') || words.length === 1) {
          stdout.write(helpText(group));
          return words.length === 1 && !argv.includes('--help') ? EXIT_USAGE : EXIT_OK;
        }
        throw new MeshfedError(
          'MESHFED_USAGE',
          `unknown command "meshfed ${words.slice(0, 2).join(' ')}"; try: ${group.map((c) => c.path.join(' ')).join(', ')}`,
        );
      }
      throw new MeshfedError(
        'MESHFED_USAGE',
        `unknown command "${words[0] ?? argv[0]}"; run "meshfed --help" for the list`,
      );
    }
    const loader = (found.command as { load?: () => Promise<Command> }).load;
    if (loader) found.command = await loader();
    if (found.rest.includes('--help') || found.rest.includes('-h')) {
      stdout.write(`${found.command.usage}\n`);
      return EXIT_OK;
    }
    const ctx: CommandContext = {
      argv: found.rest,
      json,
      debug,
      stdout,
      stderr,
      signal: options.signal ?? new AbortController().signal,
    };
    const code = await found.command.run(ctx);
    return typeof code === 'number' ? code : EXIT_OK;
  } catch (err) {
    const e = toMeshfedError(err);
    if (json) {
      stderr.write(`${JSON.stringify({ error: e.toJSON() })}\n`);
    } else {
      // one clear line per problem (config errors may list several fields); stacks only with --debug
      stderr.write(`meshfed: ${e.message}\n`);
      if (debug)
        stderr.write(`${e.stack ?? ''}\n${e.cause instanceof Error ? `caused by: ${e.cause.stack}\n` : ''}`);
    }
    return e.code === 'MESHFED_USAGE' ? EXIT_USAGE : EXIT_FAILURE;
  }
}
