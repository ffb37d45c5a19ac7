import type { Command } from '../command.ts';
import { parseFlags, requireFlag } from '../command.ts';
import { Daemon } from '../daemon.ts';

export const gatewayCommand: Command = {
  path: ['gateway'],
  summary: 'run the gateway daemon from a config file',
  usage: [
    'meshfed gateway --config gateway.yaml',
    '',
    'Runs one east-west gateway: identity, discovery, federation over NATS, and the data plane.',
    'Every field of the config file is documented in docs/config.md.',
    '',
    'Signals: SIGTERM/SIGINT drain (stop accepting, finish in-flight requests within drainTimeout)',
    'and exit; SIGHUP re-reads the config and trust bundle without dropping connections.',
    'Refuses to start when NODE_TLS_REJECT_UNAUTHORIZED=0 or a key file is readable by others.',
  ].join('\n'),
  async run(ctx) {
    const { values } = parseFlags(ctx, { config: { type: 'string', short: 'c' } }, 'gateway');
    const file = requireFlag(values, 'config', 'gateway');
    const daemon = Daemon.fromFile(file);
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
