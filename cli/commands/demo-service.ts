import type { Command } from '../command.ts';
import { parseFlags, requireFlag } from '../command.ts';
import { startGreeterService, startHelloService } from '../demo/demo-services.ts';
import { MeshfedError } from '../../core/index.ts';

/** Runs one demo service in the foreground (the demo starts these as child processes). */
export const demoServiceCommand: Command = {
  path: ['demo-service'],
  summary: 'run one demo service (hello: HTTP, greeter: gRPC) until stopped',
  usage: [
    'meshfed demo-service --kind hello|greeter --cluster NAME [--service NAME] [--version V] [--port N] [--host ADDR]',
    '',
    'Runs a demo service in the foreground and prints {"port": N} once it listens.',
    'hello answers JSON that names the cluster; greeter is gRPC (unary and server-streaming) and names',
    'its --version (default v1) in every reply.',
  ].join('\n'),
  async run(ctx) {
    const { values } = parseFlags(
      ctx,
      {
        kind: { type: 'string' },
        cluster: { type: 'string' },
        service: { type: 'string' },
        version: { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
      },
      'demo-service',
    );
    const kind = requireFlag(values, 'kind', 'demo-service');
    const cluster = requireFlag(values, 'cluster', 'demo-service');
    const port = values.port === undefined ? 0 : Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new MeshfedError(
        'MESHFED_USAGE',
        `demo-service: --port must be a port number, got ${values.port}`,
      );
    }
    const host = values.host ?? '127.0.0.1';
    let close: () => Promise<void>;
    let bound: number;
    if (kind === 'hello') {
      const s = await startHelloService({ cluster, service: values.service ?? 'hello.demo', host, port });
      close = s.close;
      bound = s.port;
    } else if (kind === 'greeter') {
      const version = values.version ?? 'v1';
      if (!/^[a-z0-9][a-z0-9.-]{0,31}$/.test(version)) {
        throw new MeshfedError(
          'MESHFED_USAGE',
          `demo-service: --version must be a short release name like v2 (lower-case letters, digits, '.', '-'), got ${version}`,
        );
      }
      const s = await startGreeterService({ cluster, host, port, version });
      close = s.close;
      bound = s.port;
    } else {
      throw new MeshfedError('MESHFED_USAGE', `demo-service: --kind must be hello or greeter, got ${kind}`);
    }
    ctx.stdout.write(`${JSON.stringify({ kind, cluster, port: bound, pid: process.pid })}\n`);
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await close();
  },
};
