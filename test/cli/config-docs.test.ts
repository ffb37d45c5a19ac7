import { readFileSync, writeFileSync } from 'node:fs';
import { configFields, renderConfigDocs } from '../../cli/config-docs.ts';
import { daemonConfigSchema } from '../../cli/daemon-config.ts';
import { MINIMAL_GATEWAY_CONFIG } from '../helpers/gateway-config.ts';

const DOC = new URL('../../docs/config.md', import.meta.url);
const INTRO = `# meshfed gateway configuration

One YAML file per gateway (\`meshfed gateway --config gateway.yaml\`). It is validated at start:
unknown fields are refused, every problem is reported at once with the field's path, and the
result is frozen. Relative paths are resolved against the config file's directory. Durations are
written \`500ms\`, \`30s\`, \`5m\`, \`24h\`, \`7d\` (a bare number is milliseconds), at most \`24d\` (the longest a
timer waits) except \`identity.leafTtl\`; addresses \`host:port\`. A field marked required has no default.
SIGHUP re-reads the file: \`observability.logLevel\`, \`drainNotice\`, \`drainTimeout\` and the trust bundle
apply live; a change to any other field is refused, named in the log, and the gateway keeps running on the
previous value until it is restarted.

This page is generated from the schema (\`cli/daemon-config.ts\` and the component schemas it
composes); \`UPDATE=1 npm run jest -- test/cli/config-docs.test.ts\` rewrites it, and the test fails
when it is out of date. An example: \`deploy/consul/gateway.yaml\`, or any \`.meshfed-demo/<cluster>/gateway.yaml\`
written by \`npm run demo\`.`;

describe('docs/config.md', () => {
  test('documents every field of the gateway config with its default (golden file)', () => {
    const expected = renderConfigDocs(daemonConfigSchema, INTRO);
    if (process.env.UPDATE === '1') writeFileSync(DOC, expected);
    expect(readFileSync(DOC, 'utf8')).toBe(expected);
  });

  test('the minimal config is valid', () => {
    expect(daemonConfigSchema.safeParse(MINIMAL_GATEWAY_CONFIG).success).toBe(true);
  });

  test('defaults are the schema\'s own, written as in a config file; fields without one are required (the page once showed a sample\'s "east" as the default cluster)', () => {
    const byPath = new Map(configFields(daemonConfigSchema).map((f) => [f.path, f]));
    expect(byPath.get('cluster')).toMatchObject({ required: true, default: '' });
    expect(byPath.get('stateDir')).toMatchObject({ required: true, default: '' });
    expect(byPath.get('locality.region')).toMatchObject({ required: true, default: '' });
    expect(byPath.get('name')).toMatchObject({ required: false, default: '`"gateway"`' });
    expect(byPath.get('gateway.listeners.eastWest')).toMatchObject({ default: '`"0.0.0.0:15443"`' });
    expect(byPath.get('identity.leafTtl')).toMatchObject({ type: 'duration', default: '`"24h"`' });
    expect(byPath.get('gateway.egress.trustedNetworks')?.type).toBe('list of CIDR');
    expect(byPath.has('observability.requestLogSampleRate')).toBe(false);
  });

  test('every discovery source and sink documents each of its options', () => {
    const fields = configFields(daemonConfigSchema);
    for (const form of ['type=static', 'type=consul', 'type=kubernetes']) {
      const rows = fields.filter((f) => f.path.startsWith(`discovery.sources[]{${form}}.`));
      expect(rows.length).toBeGreaterThan(1);
      for (const f of rows)
        if (!f.path.endsWith('.type'))
          expect([f.path, f.description]).toEqual([f.path, expect.stringMatching(/\w/)]);
    }
    for (const form of ['type=consul', 'type=kubernetes']) {
      expect(fields.some((f) => f.path === `discovery.sinks[]{${form}}.egressAddress`)).toBe(true);
    }
    expect(fields.find((f) => f.path === 'discovery.sources[]{type=static}.file')).toMatchObject({
      required: true,
    });
  });

  test('covers each component section', () => {
    const paths = configFields(daemonConfigSchema).map((f) => f.path);
    for (const p of [
      'cluster',
      'identity.caDir',
      'gateway.listeners.eastWest',
      'balancer.outlier.consecutiveFailures',
      'federation.nats',
      'discovery.sources',
      'observability.tracing.exporter',
    ]) {
      expect(
        paths.some((x) => x === p || x.startsWith(`${p}.`) || x.startsWith(`${p}[`) || x.startsWith(`${p}{`)),
      ).toBe(true);
    }
  });
});
