import { Writable } from 'node:stream';
import { componentLogger, createLogger } from '../../core/index.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, stream };
}

describe('logger', () => {
  test('child loggers carry component and cluster', () => {
    const { lines, stream } = capture();
    const log = componentLogger(createLogger({ destination: stream }), 'federation', 'east');
    log.info({ services: 3 }, 'catalog synced');
    expect(lines[0]).toMatchObject({
      level: 'info',
      component: 'federation',
      cluster: 'east',
      services: 3,
      msg: 'catalog synced',
    });
  });

  test('a component logger of a component logger writes each binding once (no duplicate JSON keys)', () => {
    const raw: string[] = [];
    const stream = new Writable({
      write(chunk, _enc, cb) {
        raw.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    const daemon = createLogger({ destination: stream }).child({ cluster: 'east', gateway: 'east-gw' });
    // the daemon hands its federation a component logger, and the federation makes its own of it
    const federation = componentLogger(componentLogger(daemon, 'federation', 'east'), 'federation', 'east');
    federation.warn('NATS disconnected');
    const keys = [...raw[0]!.matchAll(/"(\w+)":/g)].map((m) => m[1]);
    expect(keys.filter((k) => k === 'cluster')).toHaveLength(1);
    expect(keys.filter((k) => k === 'component')).toHaveLength(1);
    expect(JSON.parse(raw[0]!)).toMatchObject({
      cluster: 'east',
      gateway: 'east-gw',
      component: 'federation',
    });
  });

  test('key material, tokens and credentials are redacted at any level of a child', () => {
    const { lines, stream } = capture();
    const log = componentLogger(createLogger({ destination: stream }), 'ca');
    const secret = '-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----';
    log.info(
      {
        key: secret,
        token: 't0ken',
        leaf: { privateKey: secret, keyPem: secret },
        headers: { authorization: 'Bearer x' },
      },
      'issued',
    );
    const text = JSON.stringify(lines[0]);
    expect(text).not.toContain('PRIVATE KEY');
    expect(text).not.toContain('t0ken');
    expect(text).not.toContain('Bearer');
    expect(lines[0]).toMatchObject({ key: '[redacted]', token: '[redacted]' });
  });

  test('certificates are logged by allowlist, never as PEM', () => {
    const { lines, stream } = capture();
    const log = createLogger({ destination: stream });
    log.info(
      {
        cert: {
          spiffeId: 'spiffe://mesh.example/cluster/east/gateway/gw',
          serial: 'ab',
          pem: '-----BEGIN CERTIFICATE-----',
        },
      },
      'rotated',
    );
    expect(lines[0]!.cert).toEqual({
      spiffeId: 'spiffe://mesh.example/cluster/east/gateway/gw',
      serial: 'ab',
    });
  });

  test('level filtering works', () => {
    const { lines, stream } = capture();
    const log = createLogger({ destination: stream, level: 'warn' });
    log.info('hidden');
    log.warn('shown');
    expect(lines.map((l) => l.msg)).toEqual(['shown']);
  });
});
