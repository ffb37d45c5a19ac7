import { readFileSync, writeFileSync } from 'node:fs';
import { configFields, renderConfigDocs } from '../../cli/config-docs.ts';
import { daemonConfigSchema } from '../../cli/daemon-config.ts';

const DOC = new URL('../../docs/config.md', import.meta.url);
const INTRO = `# meshfed gateway configuration

One YAML file per gateway (\`meshfed gateway --config gateway.yaml\`). It is validated at start:
unknown fields are refused, every problem is reported at once with the field's path, and the
result is frozen. Relative paths are resolved against the config file's directory. Durations are
written \`500ms\`, \`30s\`, \`5m\`, \`24h\`; addresses \`host:port\`. SIGHUP re-reads the file: the log level
and the trust bundle apply live; other changes are reported as needing a restart.

This page is generated from the schema (\`cli/daemon-config.ts\` and the component schemas it
composes); \`UPDATE=1 npm run jest -- test/cli/config-docs.test.ts\` rewrites it, and the test fails
when it is out of date. An example: \`deploy/consul/gateway.yaml\`, or any \`.meshfed-demo/<cluster>/gateway.yaml\`
written by \`npm run demo\`.`;

/** The smallest valid config: every other field takes its default. */
const MINIMAL = {
  cluster: 'east',
  trustDomain: 'mesh.example',
  locality: { region: 'us-east', zone: 'us-east-1a' },
  stateDir: 'state',
  identity: { caDir: 'ca' },
  federation: { nats: { servers: ['nats://127.0.0.1:4222'] } },
  discovery: { sources: [{ type: 'static', file: 'services.yaml' }] },
};

describe('docs/config.md', () => {
  test('documents every field of the gateway config with its default (golden file)', () => {
    const expected = renderConfigDocs(daemonConfigSchema, INTRO, MINIMAL);
    if (process.env.UPDATE === '1') writeFileSync(DOC, expected);
    expect(readFileSync(DOC, 'utf8')).toBe(expected);
  });

  test('the minimal config is valid', () => {
    expect(daemonConfigSchema.safeParse(MINIMAL).success).toBe(true);
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
