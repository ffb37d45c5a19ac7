import { MeshfedError } from '../../core/index.ts';
import type { Command } from '../command.ts';
import { parseFlags, requireFlag } from '../command.ts';
import { Daemon } from '../daemon.ts';
import { GATEWAY_BUFFER_POOL_SIZE } from '../node-flags.ts';
import { lowerV8WorkerPriority, v8WorkerNice } from '../thread-priority.ts';
import { GATEWAY_WORKER_ENV } from '../worker-protocol.ts';

export const gatewayCommand: Command = {
  path: ['gateway'],
  summary: 'run the gateway daemon from a config file',
  usage: [
    'meshfed gateway --config gateway.yaml [--workers N]',
    '',
    'Runs one east-west gateway: identity, discovery, federation over NATS, and the data plane.',
    'Every field of the config file is documented in docs/config.md.',
    '',
    'Signals: SIGTERM/SIGINT drain (stop accepting, finish in-flight requests within drainTimeout)',
    'and exit; SIGHUP re-reads the config and trust bundle without dropping connections.',
    'Refuses to start when NODE_TLS_REJECT_UNAUTHORIZED=0 or a key file is readable by others.',
    '',
    '--workers N  data-plane processes (overrides `workers` in the config; default 1, one event loop).',
    '             With N > 1 this process supervises N workers that share the data-plane ports',
    '             (SO_REUSEPORT), replaces a worker that dies, and serves /metrics summed over all.',
  ].join('\n'),
  async run(ctx) {
    // Node's Buffer pool below glibc's mmap threshold (cli/node-flags.ts), in the supervisor and each worker
    Buffer.poolSize = GATEWAY_BUFFER_POOL_SIZE;
    // V8's background compiling and GC at the nice value MESHFED_V8_WORKER_NICE asks for, none by default
    // (cli/thread-priority.ts); each worker too
    lowerV8WorkerPriority(v8WorkerNice());
    // a data-plane worker forked by the supervisor (node:cluster re-runs this same command line; Node has
    // set up the worker's side of node:cluster before any module loads, so importing it here costs nothing)
    if (process.env[GATEWAY_WORKER_ENV] === '1' && (await import('node:cluster')).default.isWorker) {
      const { runWorker } = await import('../gateway-worker.ts');
      process.exit(await runWorker());
    }
    const { values } = parseFlags(
      ctx,
      { config: { type: 'string', short: 'c' }, workers: { type: 'string' } },
      'gateway',
    );
    const file = requireFlag(values, 'config', 'gateway');
    let workers: number | undefined;
    if (values.workers !== undefined) {
      workers = Number(values.workers);
      if (!Number.isInteger(workers) || workers < 1 || workers > 256) {
        throw new MeshfedError(
          'MESHFED_USAGE',
          `--workers: expected a whole number from 1 to 256, got "${values.workers}"`,
        );
      }
    }
    const daemon = Daemon.fromFile(file, workers === undefined ? {} : { workers });
    const onHup = () => {
      daemon
        .reload()
        .catch((err: unknown) => daemon.log.error({ err }, 'reload refused; keeping the running config'));
    };
    process.on('SIGHUP', onHup);
    try {
      await daemon.start();
      if (ctx.json) ctx.stdout.write(`${JSON.stringify({ ready: true, addresses: daemon.addresses() })}\n`);
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) resolve();
        ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      process.off('SIGHUP', onHup);
      await daemon.stop();
    }
    return 0;
  },
};
