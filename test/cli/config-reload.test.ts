import { planReload } from '../../cli/config-reload.ts';
import { type DaemonConfig, daemonConfigSchema } from '../../cli/daemon-config.ts';
import { parseConfig } from '../../core/index.ts';
import { MINIMAL_GATEWAY_CONFIG } from '../helpers/gateway-config.ts';

function parsed(extra: Record<string, unknown> = {}): DaemonConfig {
  return parseConfig(daemonConfigSchema, { ...MINIMAL_GATEWAY_CONFIG, ...extra }, { source: 'gateway.yaml' });
}

describe('planReload: what SIGHUP applies and what it refuses', () => {
  const cases: {
    name: string;
    change: Record<string, unknown>;
    applied: string[];
    needsRestart: string[];
  }[] = [
    { name: 'nothing changed', change: {}, applied: [], needsRestart: [] },
    {
      name: 'the log level applies live',
      change: { observability: { logLevel: 'debug' } },
      applied: ['observability.logLevel'],
      needsRestart: [],
    },
    {
      name: 'identity keys (cluster, name) are refused by name',
      change: { cluster: 'south', name: 'other' },
      applied: [],
      needsRestart: ['cluster', 'name'],
    },
    {
      name: 'an address is one field, named whole',
      change: { gateway: { listeners: { egress: '127.0.0.1:16001' } } },
      applied: [],
      needsRestart: ['gateway.listeners.egress'],
    },
    {
      name: 'a list is one field',
      change: { discovery: { sources: [{ type: 'static', file: 'other.yaml' }] } },
      applied: [],
      needsRestart: ['discovery.sources'],
    },
    {
      name: 'the golden metrics caps take a restart (the series already made stay until then)',
      change: { observability: { metricLimits: { tuples: 64 } } },
      applied: [],
      needsRestart: ['observability.metricLimits.tuples'],
    },
    {
      name: 'live and restart-only keys in one edit are told apart',
      change: { drainTimeout: '3s', observability: { tracing: { sampleRatio: 0.5 } } },
      applied: ['drainTimeout'],
      needsRestart: ['observability.tracing.sampleRatio'],
    },
  ];

  test.each(cases)('$name', ({ change, applied, needsRestart }) => {
    const running = parsed();
    const plan = planReload(running, parsed(change));
    expect(plan.applied.sort()).toEqual(applied.sort());
    expect(plan.needsRestart.sort()).toEqual(needsRestart.sort());
    // what runs afterwards: the new value of each live key, the old value of everything else
    for (const key of needsRestart) {
      const at = (c: unknown) => key.split('.').reduce((o, k) => (o as Record<string, unknown>)[k], c);
      expect(at(plan.config)).toEqual(at(running));
    }
    expect(Object.isFrozen(plan.config.observability)).toBe(true);
  });

  test('the live values are the re-read ones', () => {
    const plan = planReload(parsed(), parsed({ drainTimeout: '3s', observability: { logLevel: 'warn' } }));
    expect(plan.config.drainTimeout).toBe(3000);
    expect(plan.config.observability.logLevel).toBe('warn');
    expect(plan.config.cluster).toBe('east');
  });
});
