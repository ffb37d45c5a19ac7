import { BlockList, isIP } from 'node:net';
import { dnsLabel, parseHostPort, z } from '../core/index.ts';

/** "10.0.0.0/8", "192.0.2.7/32", "fd00::/8": an IP literal and a prefix length that fits its family. */
export function parseCidr(
  value: string,
): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const slash = value.indexOf('/');
  if (slash <= 0) return undefined;
  const address = value.slice(0, slash);
  const bits = value.slice(slash + 1);
  const version = isIP(address);
  if (version === 0 || !/^\d{1,3}$/.test(bits)) return undefined;
  const prefix = Number(bits);
  if (prefix > (version === 4 ? 32 : 128)) return undefined;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** A CIDR range in a config file; a bad one fails validation naming its field, never later as a Node error. */
export function cidr() {
  return z.string().refine((value) => parseCidr(value) !== undefined, {
    error: (issue) =>
      `expected a CIDR range such as "10.0.0.0/8" or "fd00::/8", got ${JSON.stringify(issue.input)}`,
  });
}

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
    this.#all = config?.allow ? blockList(config.allow) : undefined;
    this.#allText = config?.allow?.join(', ') ?? '';
    for (const [cluster, ranges] of Object.entries(config?.clusters ?? {})) {
      this.#perCluster.set(cluster, { list: blockList(ranges), text: ranges.join(', ') });
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

function blockList(ranges: readonly string[]): BlockList {
  const list = new BlockList();
  for (const r of ranges) {
    const c = parseCidr(r)!;
    list.addSubnet(c.address, c.prefix, c.family);
  }
  return list;
}
