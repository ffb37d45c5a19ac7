import {
  type CatalogView,
  parseClustersetHost,
  type ServicePort,
  type ServiceRef,
} from '../../core/index.ts';
import { refuse } from '../answers.ts';
import type { LocalServices } from '../local-services.ts';
import type { RequestLayer } from '../pipeline.ts';

const HTTP_PROTOCOLS = new Set(['http', 'http2', 'grpc']);

/**
 * The port an HTTP request goes to: the one named (by name or number), else the service's first HTTP
 * port. A tcp or tls port never receives a request: its backend does not speak HTTP, and a raw stream
 * to it is CONNECT's job, with its own checks.
 */
function httpPort(
  service: string,
  ports: readonly ServicePort[],
  want: { port?: number; portName?: string },
) {
  const named = want.portName ?? (want.port !== undefined ? String(want.port) : undefined);
  const port =
    named === undefined
      ? ports.find((p) => HTTP_PROTOCOLS.has(p.protocol))
      : ports.find((p) => p.name === named || String(p.port) === named);
  if (!port) {
    if (named === undefined) refuse('not-an-http-port', `${service} has no http, http2 or grpc port`);
    refuse('unknown-port', `${service} declares no port ${named}`);
  }
  if (!HTTP_PROTOCOLS.has(port.protocol)) {
    refuse(
      'not-an-http-port',
      `port ${port.name} (${port.port}) of ${service} is ${port.protocol}, not HTTP`,
    );
  }
  return port;
}

/** Egress: the service named by Host/:authority, known locally or offered by another cluster. */
export function egressRoute(options: { catalog: CatalogView; local: LocalServices }): RequestLayer {
  return (next) => (r) => {
    const authority = r.authority;
    const ref = parseClustersetHost(authority);
    if (!ref) {
      refuse(
        'unknown-service',
        `${authority.slice(0, 200) || '(no host)'} is not a <service>.<namespace>.svc.clusterset.local name`,
      );
    }
    const ports =
      options.local.get(ref)?.ports ?? options.catalog.instances(ref.namespace, ref.name)[0]?.ports;
    if (!ports) {
      refuse(
        'unknown-service',
        `no cluster offers ${ref.name}.${ref.namespace}; is it exported? (meshfed services)`,
      );
    }
    const port = httpPort(`${ref.name}.${ref.namespace}`, ports, ref);
    r.route = { namespace: ref.namespace, name: ref.name, scope: 'any', portName: port.name };
    return next(r);
  };
}

const NOT_EXPORTED = 'no exported service of this cluster has that name';

/**
 * East-west requests: the exported local service named by `x-meshfed-service` (namespace/name/port, what
 * gateways send) or by the authority (what a third-party mTLS client sends).
 */
export function tunnelRoute(options: { local: LocalServices }): RequestLayer {
  return (next) => (r) => {
    const tunnelled = r.headers['x-meshfed-service'];
    let ref: (ServiceRef & { portName?: string }) | undefined;
    if (typeof tunnelled === 'string') {
      const [namespace, name, port] = tunnelled.split('/');
      ref = namespace && name ? { namespace, name, ...(port ? { portName: port } : {}) } : undefined;
    } else {
      ref = parseClustersetHost(r.authority);
    }
    const svc = ref ? options.local.get(ref) : undefined;
    if (!ref || !svc?.exported) refuse('not-exported', NOT_EXPORTED);
    const port = httpPort(`${ref.name}.${ref.namespace}`, svc.ports, ref);
    r.route = { namespace: ref.namespace, name: ref.name, scope: 'local', portName: port.name };
    return next(r);
  };
}

/**
 * CONNECT on the tunnel: `<svc>.<ns>.svc.clusterset.local:<port>` must name a port the exported service
 * declares as `tcp`. An HTTP, gRPC or TLS port is never handed a raw stream: its backend would trust
 * in-band headers (an identity header) that no gateway checked, and TLS ports have SNI passthrough.
 */
export function connectRoute(options: { local: LocalServices }): RequestLayer {
  return (next) => (r) => {
    const ref = parseClustersetHost(r.authority);
    const svc = ref ? options.local.get(ref) : undefined;
    if (!ref || !svc?.exported) refuse('not-exported', NOT_EXPORTED);
    const port = svc.ports.find((p) => p.port === ref.port);
    if (!port) {
      refuse(
        'unknown-port',
        `${ref.name}.${ref.namespace} declares no port ${ref.port ?? '(none given)'}; CONNECT names one of its tcp ports`,
      );
    }
    if (port.protocol !== 'tcp') {
      refuse(
        'not-a-tcp-port',
        `port ${port.port} of ${ref.name}.${ref.namespace} is ${port.protocol}: CONNECT reaches only tcp ports`,
      );
    }
    r.route = { namespace: ref.namespace, name: ref.name, scope: 'local', portName: port.name };
    return next(r);
  };
}
