/** The smallest valid gateway config file (as YAML would give it): every other field takes its default. */
export const MINIMAL_GATEWAY_CONFIG = {
  cluster: 'east',
  trustDomain: 'mesh.example',
  locality: { region: 'us-east', zone: 'us-east-1a' },
  // the default east-west listener is a wildcard, so other clusters need an address to dial
  advertise: 'gw.east.example:15443',
  stateDir: 'state',
  identity: { caDir: 'ca' },
  federation: { nats: { servers: ['nats://127.0.0.1:4222'] } },
  discovery: { sources: [{ type: 'static', file: 'services.yaml' }] },
} as const;
