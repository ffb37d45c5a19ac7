import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { loadDaemonConfig } from '../../cli/daemon-config.ts';
import type { ConfigProblem, MeshfedError } from '../../core/index.ts';
import { DEFAULT_GOLDEN_LIMITS } from '../../gateway/index.ts';
import { MINIMAL_GATEWAY_CONFIG } from '../helpers/gateway-config.ts';

const dir = mkdtempSync(join(tmpdir(), 'meshfed-dcfg-'));

/** The smallest valid gateway config; `extra` is merged over it. */
function write(extra: Record<string, unknown>, name = 'gateway.yaml'): string {
  const config = { ...MINIMAL_GATEWAY_CONFIG, ...extra };
  const file = join(dir, name);
  writeFileSync(file, stringify(config));
  return file;
}

function problemsOf(file: string): { code: string; paths: string[] } {
  try {
    loadDaemonConfig(file);
  } catch (err) {
    const e = err as MeshfedError;
    return {
      code: e.code,
      paths: ((e.details?.problems ?? []) as ConfigProblem[]).map((p) => p.path).sort(),
    };
  }
  throw new Error('expected the config to be refused');
}

describe('gateway config: validated once, every problem in one error', () => {
  test('bad CIDRs, a missing advertise, an over-long socket path, a bad duration and an unknown field are listed together', () => {
    const file = write({
      advertise: undefined,
      stateDir: 'd'.repeat(120),
      drainTimeout: 'soon',
      gateway: { egress: { trustedNetworks: ['10.0.0.0/33', 'not-a-network', '192.168.0.0/16'] } },
      observability: { requestLogSampleRate: 0.1 },
    });
    expect(problemsOf(file)).toEqual({
      code: 'MESHFED_CONFIG_INVALID',
      paths: [
        'admin.socket',
        'advertise',
        'drainTimeout',
        'gateway.egress.trustedNetworks[0]',
        'gateway.egress.trustedNetworks[1]',
        'observability.requestLogSampleRate',
      ],
    });
  });

  test('advertise may be left out when the east-west listener has a dialable address', () => {
    const file = write({ advertise: undefined, gateway: { listeners: { eastWest: '10.1.2.3:15443' } } });
    expect(loadDaemonConfig(file).config.advertise).toBeUndefined();
    expect(
      problemsOf(write({ advertise: undefined, gateway: { listeners: { eastWest: '[::]:15443' } } })).paths,
    ).toEqual(['advertise']);
  });

  test('an explicit short admin.socket is accepted even under a long stateDir', () => {
    const loaded = loadDaemonConfig(write({ stateDir: 'd'.repeat(120), admin: { socket: '/tmp/m.sock' } }));
    expect(loaded.adminSocket).toBe('/tmp/m.sock');
  });

  test('every default is applied through the nested sections (each is written once, in the schema)', () => {
    const c = loadDaemonConfig(write({})).config;
    expect(c.gateway.listeners).toEqual({
      eastWest: { host: '0.0.0.0', port: 15443 },
      egress: { host: '127.0.0.1', port: 15001 },
      admin: { host: '127.0.0.1', port: 15000 },
    });
    expect(c.gateway.egress.trustedNetworks).toEqual(['127.0.0.0/8', '::1/128']);
    expect(c.gateway.limits).toMatchObject({
      headersTimeout: 10_000,
      helloTimeout: 5_000,
      maxConnections: 10_000,
    });
    expect(c.identity.leafTtl).toBe(86_400_000);
    expect(c.drainTimeout).toBe(15_000);
    expect(c.observability).toEqual({
      logLevel: 'info',
      tracing: { exporter: 'none', sampleRatio: 1 },
      metricLimits: DEFAULT_GOLDEN_LIMITS,
    });
    expect(c.discovery).toMatchObject({ importDebounce: 200, resyncInterval: 300_000, sinks: [] });
    expect(c.discovery.sources[0]).toEqual({ type: 'static', file: 'services.yaml', debounce: 100 });
    expect(Object.isFrozen(c.gateway.listeners)).toBe(true);
  });

  test("observability.metricLimits: defaults are the golden metrics' own, and each cap is checked by name", () => {
    expect(loadDaemonConfig(write({})).config.observability.metricLimits).toEqual(DEFAULT_GOLDEN_LIMITS);
    const set = loadDaemonConfig(write({ observability: { metricLimits: { clusters: 8, tuples: 2000 } } }));
    expect(set.config.observability.metricLimits).toEqual({
      ...DEFAULT_GOLDEN_LIMITS,
      clusters: 8,
      tuples: 2000,
    });
    // a cap of 0, one past its maximum, a fraction and an unknown key: four problems, one error
    const file = write({
      observability: { metricLimits: { clusters: 0, tuples: 10_001, services: 1.5, series: 10 } },
    });
    expect(problemsOf(file)).toEqual({
      code: 'MESHFED_CONFIG_INVALID',
      paths: [
        'observability.metricLimits.clusters',
        'observability.metricLimits.series',
        'observability.metricLimits.services',
        'observability.metricLimits.tuples',
      ],
    });
  });

  test('trusted networks are parsed into canonical CIDRs', () => {
    const c = loadDaemonConfig(
      write({ gateway: { egress: { trustedNetworks: ['10.0.0.7', 'fd00::/8'] } } }),
    ).config;
    expect(c.gateway.egress.trustedNetworks).toEqual(['10.0.0.7/32', 'fd00::/8']);
  });
});
