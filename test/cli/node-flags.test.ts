import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GATEWAY_BUFFER_POOL_SIZE,
  GATEWAY_ENV,
  GATEWAY_NODE_FLAGS,
  missingEnv,
  missingNodeFlags,
} from '../../cli/node-flags.ts';

test('a flag is missing unless node arguments or NODE_OPTIONS set the same option', () => {
  const wanted = ['--max-semi-space-size=4'];
  expect(missingNodeFlags(wanted, [], undefined)).toEqual(wanted);
  expect(missingNodeFlags(wanted, ['--enable-source-maps'], '--no-warnings')).toEqual(wanted);
  expect(missingNodeFlags(wanted, ['--max-semi-space-size=16'], undefined)).toEqual([]);
  expect(missingNodeFlags(wanted, [], ' --max_semi_space_size=1 --no-warnings')).toEqual([]);
});

test('a variable is missing unless the environment sets it, to anything', () => {
  const wanted = { MALLOC_MMAP_THRESHOLD_: '65537' };
  expect(missingEnv(wanted, {})).toEqual(wanted);
  expect(missingEnv(wanted, { MALLOC_MMAP_THRESHOLD_: '131072' })).toEqual({});
});

describe('meshfed gateway processes', () => {
  const node = join(process.cwd(), 'node_modules', '.bin', 'node');
  let dir: string;
  let preload: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshfed-node-flags-'));
    // runs in every Node process started with it (NODE_OPTIONS is inherited): says how it was started
    preload = join(dir, 'report.cjs');
    writeFileSync(
      preload,
      "process.stderr.write(['started', process.pid, JSON.stringify(process.execArgv), JSON.stringify(process.argv.slice(2)), String(process.env.MALLOC_MMAP_THRESHOLD_)].join(' ') + '\\n');\n" +
        "process.on('exit', () => process.stderr.write('exited ' + process.pid + ' pool ' + Buffer.poolSize + '\\n'));\n",
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const spawn = (args: string[], nodeOptions: string, env: Record<string, string> = {}) =>
    spawnSync(node, ['bin/meshfed.js', ...args], {
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: nodeOptions, ...env },
    }).stderr.split('\n');
  const run = (args: string[], nodeOptions: string, env: Record<string, string> = {}) =>
    spawn(args, nodeOptions, env).filter((l) => l.startsWith('started '));

  test('run with the gateway V8 flags: the same process and arguments, started again once with them', () => {
    const starts = run(['gateway', '--config', join(dir, 'missing.yaml')], `--require ${preload}`);
    expect(starts).toHaveLength(2);
    const [first, second] = starts.map((l) => l.split(' '));
    expect(second![1]).toBe(first![1]);
    expect(JSON.parse(second![2]!)).toEqual(expect.arrayContaining([...GATEWAY_NODE_FLAGS]));
    expect(second![3]).toBe(first![3]);
    expect(second![4]).toBe(GATEWAY_ENV.MALLOC_MMAP_THRESHOLD_);
  });

  test('an operator setting of the same option wins, and other commands are not restarted', () => {
    const own = run(
      ['gateway', '--config', join(dir, 'missing.yaml')],
      `--require ${preload} --max-semi-space-size=16 --v8-pool-size=2 --expose-gc`,
      { MALLOC_MMAP_THRESHOLD_: '131072' },
    );
    expect(own).toHaveLength(1);
    expect(run(['--help'], `--require ${preload}`)).toHaveLength(1);
  });

  test('Buffer pool: below the mmap threshold, set by the gateway command only', () => {
    // a pool (one malloc of its size, plus malloc's 16-byte header) must come from the heap, not a mapping of its own
    expect(GATEWAY_BUFFER_POOL_SIZE + 16).toBeLessThan(Number(GATEWAY_ENV.MALLOC_MMAP_THRESHOLD_));
    // the gateway (a missing config file: it exits after its command began) ends with the gateway's pool size
    const gateway = spawn(['gateway', '--config', join(dir, 'missing.yaml')], `--require ${preload}`);
    const exits = gateway.filter((l) => l.startsWith('exited '));
    expect(exits).toHaveLength(1);
    expect(exits[0]).toMatch(new RegExp(` pool ${GATEWAY_BUFFER_POOL_SIZE}$`));
    const help = spawn(['--help'], `--require ${preload}`).filter((l) => l.startsWith('exited '));
    expect(help).toHaveLength(1);
    expect(help[0]).not.toMatch(new RegExp(` pool ${GATEWAY_BUFFER_POOL_SIZE}$`));
  });
});
