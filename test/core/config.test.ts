import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cidr,
  duration,
  hostPort,
  loadConfigFile,
  MeshfedError,
  parseClustersetHost,
  parseDuration,
  parseHostPort,
  z,
} from '../../core/index.ts';

const schema = z.strictObject({
  cluster: z.string().regex(/^[a-z0-9-]+$/, 'expected a DNS label'),
  listeners: z
    .strictObject({
      eastWest: hostPort().default({ host: '0.0.0.0', port: 15443 }),
      egress: hostPort('127.0.0.1').default({ host: '127.0.0.1', port: 15001 }),
    })
    .default({ eastWest: { host: '0.0.0.0', port: 15443 }, egress: { host: '127.0.0.1', port: 15001 } }),
  timeouts: z.strictObject({ connect: duration().default(1000) }).default({ connect: 1000 }),
  weight: z.number().int().min(0).default(1),
});

const dir = mkdtempSync(join(tmpdir(), 'meshfed-config-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function errorOf(fn: () => unknown): MeshfedError {
  try {
    fn();
  } catch (err) {
    if (err instanceof MeshfedError) return err;
    throw err;
  }
  throw new Error('expected an error');
}

describe('config files', () => {
  test('a good file is parsed, defaulted and frozen', () => {
    const cfg = loadConfigFile(
      schema,
      file('good.yaml', 'cluster: east\nlisteners:\n  eastWest: "0.0.0.0:16443"\n'),
    );
    expect(cfg.listeners.eastWest).toEqual({ host: '0.0.0.0', port: 16443 });
    expect(cfg.listeners.egress).toEqual({ host: '127.0.0.1', port: 15001 });
    expect(cfg.timeouts.connect).toBe(1000);
    expect(Object.isFrozen(cfg)).toBe(true);
    expect(Object.isFrozen(cfg.listeners)).toBe(true);
  });

  test.each([
    [
      'bad host:port',
      'cluster: east\nlisteners:\n  eastWest: "15443x"\n',
      'gateway.yaml: listeners.eastWest: expected host:port, got "15443x"',
    ],
    [
      'wrong type',
      'cluster: east\nweight: "ten"\n',
      'gateway.yaml: weight: Invalid input: expected number, received string',
    ],
    [
      'unknown key',
      'cluster: east\nlisteners:\n  eastwest: ":1"\n',
      'gateway.yaml: listeners.eastwest: unknown field (remove it or check its spelling)',
    ],
    ['missing required', 'weight: 1\n', 'gateway.yaml: cluster: required field is missing'],
    [
      'bad duration',
      'cluster: east\ntimeouts:\n  connect: "5 minutes"\n',
      'gateway.yaml: timeouts.connect: expected a duration such as "500ms", "30s", "5m" or "24h", got "5 minutes"',
    ],
    [
      'a duration no timer can wait',
      'cluster: east\ntimeouts:\n  connect: 30d\n',
      'gateway.yaml: timeouts.connect: expected a duration of at most 24d (2147483647 ms, the longest a timer waits), got "30d"',
    ],
    [
      'the same in milliseconds',
      'cluster: east\ntimeouts:\n  connect: 2147483648\n',
      'gateway.yaml: timeouts.connect: expected a duration of at most 24d (2147483647 ms, the longest a timer waits), got 2147483648',
    ],
    ['regex', 'cluster: East_1\n', 'gateway.yaml: cluster: expected a DNS label'],
    [
      'out of range',
      'cluster: east\nweight: -1\n',
      'gateway.yaml: weight: Too small: expected number to be >=0',
    ],
  ])('%s gets the documented message', (_kind, text, message) => {
    const err = errorOf(() => loadConfigFile(schema, file('gateway.yaml', text)));
    expect(err.code).toBe('MESHFED_CONFIG_INVALID');
    expect(err.message.split('\n')).toContain(message);
  });

  test('24 days is the longest duration a timer field takes; a validity period (long) may be longer', () => {
    expect(duration().parse('24d')).toBe(24 * 86_400_000);
    expect(duration({ long: true }).parse('90d')).toBe(90 * 86_400_000);
    expect(duration().safeParse('25d').success).toBe(false);
  });

  test('all problems are reported together, one line each', () => {
    const err = errorOf(() =>
      loadConfigFile(
        schema,
        file('gateway.yaml', 'weight: "x"\nlisteners:\n  eastWest: "nope"\n  extra: 1\n'),
      ),
    );
    expect(err.message.split('\n')).toHaveLength(4);
    expect(err.details?.problems as unknown[]).toHaveLength(4);
  });

  test('a renamed option fails with the new name', () => {
    const err = errorOf(() =>
      loadConfigFile(
        schema,
        file('gateway.yaml', 'cluster: east\nlisteners:\n  eastWest: ":1"\n  ingress: ":2"\n'),
        {
          renamed: { 'listeners.ingress': 'listeners.eastWest' },
        },
      ),
    );
    expect(err.message).toContain(
      'gateway.yaml: listeners.ingress: this option was renamed to "listeners.eastWest"',
    );
  });

  test('a missing file and broken YAML are MESHFED_CONFIG_UNREADABLE naming the file and line', () => {
    const missing = errorOf(() => loadConfigFile(schema, join(dir, 'nope.yaml')));
    expect(missing.code).toBe('MESHFED_CONFIG_UNREADABLE');
    expect(missing.message).toContain('nope.yaml: cannot read config: file not found');
    const broken = errorOf(() => loadConfigFile(schema, file('broken.yaml', 'cluster: east\n  bad: [\n')));
    expect(broken.code).toBe('MESHFED_CONFIG_UNREADABLE');
    expect(broken.message).toMatch(/^broken\.yaml: line \d+ column \d+: /);
  });

  test('duplicate keys are refused rather than silently overwritten', () => {
    const err = errorOf(() => loadConfigFile(schema, file('dup.yaml', 'cluster: east\ncluster: west\n')));
    expect(err.code).toBe('MESHFED_CONFIG_UNREADABLE');
  });
});

describe('value parsers', () => {
  test.each([
    ['127.0.0.1:15443', { host: '127.0.0.1', port: 15443 }],
    [':15001', { host: '0.0.0.0', port: 15001 }],
    ['15001', { host: '0.0.0.0', port: 15001 }],
    ['[::1]:80', { host: '::1', port: 80 }],
    ['gw.example:443', { host: 'gw.example', port: 443 }],
    ['15443x', undefined],
    ['host:99999', undefined],
    ['', undefined],
  ])('parseHostPort(%j)', (input, expected) => {
    expect(parseHostPort(input)).toEqual(expected);
  });

  test.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['1.5s', 1500],
    ['5m', 300_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['5', undefined],
    ['s', undefined],
  ])('parseDuration(%j)', (input, expected) => {
    expect(parseDuration(input)).toBe(expected);
  });

  test.each([
    ['orders.shop.svc.clusterset.local', { name: 'orders', namespace: 'shop' }],
    ['Orders.Shop.svc.clusterset.local.:8080', { name: 'orders', namespace: 'shop', port: 8080 }],
    ['grpc.orders.shop.svc.clusterset.local', { name: 'orders', namespace: 'shop', portName: 'grpc' }],
    ['orders.shop.svc.cluster.local', undefined],
    ['a.b.c.d.svc.clusterset.local', undefined],
    ['.shop.svc.clusterset.local', undefined],
    ['orders.shop.svc.clusterset.local:0', undefined],
  ])('parseClustersetHost(%j)', (input, expected) => {
    expect(parseClustersetHost(input)).toEqual(expected);
  });
});

describe('cidr()', () => {
  test.each([
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['10.0.0.7', '10.0.0.7/32'],
    [' 192.168.1.0/24 ', '192.168.1.0/24'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['fd00::/8', 'fd00::/8'],
    ['::1', '::1/128'],
  ])('%s is %s', (input, output) => {
    expect(cidr().parse(input)).toBe(output);
  });

  test.each([
    '10.0.0.0/33',
    '::/129',
    '10.0.0.0/-1',
    '10.0.0.0/8/8',
    '10.0.0/8',
    'example.com/8',
    '10.0.0.0/',
    '',
  ])('%j is refused with a config problem, not a Node error', (input) => {
    const r = cidr().safeParse(input);
    expect(r.success).toBe(false);
  });
});
