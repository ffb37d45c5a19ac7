import { type BlockList, isIP } from 'node:net';
import { cidr, cidrBlockList, dnsLabel, parseHostPort, z } from '../core/index.ts';

export const gatewayAddressesSchema = z.strictObject({
  allow: z
    .array(cidr())
    .min(1)
    .optional()
    .describe(
      'CIDR ranges every remote cluster’s gateway addresses must fall in (clusters without their own list); unset: no constraint',
    ),
  clusters: z
    .record(dnsLabel(), z.array(cidr()).min(1))
    .optional()
    .describe(
      'per cluster name, the CIDR ranges its gateway addresses must fall in (replaces allow for that cluster)',
    ),
});

export type GatewayAddressesConfig = z.output<typeof gatewayAddressesSchema>;

/**
 * Which gateway addresses a remote cluster may advertise. A catalog entry or announcement names the addresses
 * every other gateway will dial; without a bound, one member cluster could make all the others probe any
 * host:port (a blind port-scan oracle). With a list for a cluster (its own, else the federation-wide one),
 * every address it advertises must be an IP literal inside one of the ranges; host names are refused, since
 * what they resolve to is decided later and elsewhere.
 */
export class GatewayAddressPolicy {
  readonly #all: BlockList | undefined;
  readonly #allText: string;
  readonly #perCluster = new Map<string, { list: BlockList; text: string }>();

  constructor(config: GatewayAddressesConfig | undefined) {
    this.#all = config?.allow ? cidrBlockList(config.allow) : undefined;
    this.#allText = config?.allow?.join(', ') ?? '';
    for (const [cluster, ranges] of Object.entries(config?.clusters ?? {})) {
      this.#perCluster.set(cluster, { list: cidrBlockList(ranges), text: ranges.join(', ') });
    }
  }

  /** Undefined when every address is allowed for `cluster`; otherwise what is wrong with the first that is not. */
  check(cluster: string, gateways: readonly { name: string; address: string }[]): string | undefined {
    const own = this.#perCluster.get(cluster);
    const list = own?.list ?? this.#all;
    if (!list) return undefined;
    const ranges = own
      ? `federation.gatewayAddresses.clusters.${cluster}`
      : 'federation.gatewayAddresses.allow';
    for (const g of gateways) {
      const hp = parseHostPort(g.address, '');
      const version = hp ? isIP(hp.host) : 0;
      if (!hp || version === 0) {
        return `gateway "${g.name}" address ${JSON.stringify(g.address)} is not an IP literal with a port, which ${ranges} requires`;
      }
      if (!list.check(hp.host, version === 4 ? 'ipv4' : 'ipv6')) {
        return `gateway "${g.name}" address ${g.address} is outside ${ranges} (${own?.text ?? this.#allText})`;
      }
    }
    return undefined;
  }
}
