import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { createRegistry, isMeshfedError, parseConfig, silentLogger } from '../../core/index.ts';
import {
  createSinks,
  createSources,
  discoveryConfigSchema,
  staticFileSchema,
} from '../../discovery/index.ts';

function errorOf(raw: unknown): { code: string; message: string } {
  try {
    parseConfig(discoveryConfigSchema, raw, { source: 'gateway.yaml' });
  } catch (err) {
    if (isMeshfedError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected an error');
}

describe('discoveryConfigSchema', () => {
  test('defaults are explicit and addresses parsed', () => {
    const cfg = parseConfig(
      discoveryConfigSchema,
      { sources: [{ type: 'consul' }], sinks: [{ type: 'consul', egressAddress: '127.0.0.1:15001' }] },
      { source: 'gateway.yaml' },
    );
    expect(cfg.sources[0]).toMatchObject({
      type: 'consul',
      address: { host: '127.0.0.1', port: 8500, secure: false },
      exportTag: 'meshfed-export',
      namespace: 'default',
      wait: 300_000,
    });
    expect(cfg.sinks[0]).toMatchObject({
      nameTemplate: '{name}',
      egressAddress: { host: '127.0.0.1', port: 15001 },
    });
    expect(cfg.importDebounce).toBe(200);
  });

  test('every problem is reported at once, naming the field', () => {
    const err = errorOf({
      sources: [
        { type: 'static' },
        { type: 'consul', address: 'https://consul.example:8501', exportTags: 'x' },
        { type: 'kubernetes', namespaces: ['Bad_NS'] },
        { type: 'etcd' },
      ],
    });
    expect(err.code).toBe('MESHFED_CONFIG_INVALID');
    expect(err.message).toContain('gateway.yaml: sources[0].file: required field is missing');
    expect(err.message).toContain('sources[1].exportTags: unknown field');
    expect(err.message).toContain('sources[2].namespaces[0]');
    expect(err.message).toContain('sources[3]');
  });

  test('the examples in deploy/ are valid', () => {
    const read = (p: string) => readFileSync(new URL(`../../deploy/${p}`, import.meta.url), 'utf8');
    const consulGateway = parseDocument(read('consul/gateway.yaml')).toJS();
    expect(() =>
      parseConfig(discoveryConfigSchema, consulGateway.discovery, { source: 'consul/gateway.yaml' }),
    ).not.toThrow();
    expect(() =>
      parseConfig(staticFileSchema, parseDocument(read('consul/services.yaml')).toJS(), {
        source: 'services.yaml',
      }),
    ).not.toThrow();
    const cm = parseDocument(read('kubernetes/configmap.yaml')).toJS();
    const gateway = parseDocument(cm.data['gateway.yaml']).toJS();
    expect(() =>
      parseConfig(discoveryConfigSchema, gateway.discovery, { source: 'configmap gateway.yaml' }),
    ).not.toThrow();
  });

  test('createSources/createSinks build one object per entry; relative files resolve against basePath', async () => {
    const cfg = parseConfig(
      discoveryConfigSchema,
      {
        sources: [{ type: 'static', file: 'services.yaml' }, { type: 'consul' }],
        sinks: [{ type: 'consul' }, { type: 'kubernetes', kubeconfig: 'kube/config' }],
      },
      { source: 'gateway.yaml' },
    );
    const registry = createRegistry();
    const combined = await createSources(cfg, { logger: silentLogger(), basePath: '/etc/meshfed', registry });
    expect(registry.getSingleMetric('meshfed_discovery_services')).toBeDefined();
    expect(combined.name).toBe('static+consul');
    expect((combined.sources[0] as unknown as { file: string }).file).toBe('/etc/meshfed/services.yaml');
    expect(
      (
        await createSinks(cfg, {
          logger: silentLogger(),
          basePath: '/etc/meshfed',
          gatewayId: 'g',
          egress: { host: '127.0.0.1', port: 15001 },
          podEgress: { host: '10.0.0.5', port: 15001 },
        })
      ).map((s) => s.name),
    ).toEqual(['consul', 'kubernetes']);
  });
});
