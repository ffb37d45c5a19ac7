import { type CatalogView, parseClustersetHost, type ServiceRef } from '../../core/index.ts';
import { refuse } from '../answers.ts';
import type { LocalServices } from '../local-services.ts';
import type { RequestLayer } from '../pipeline.ts';

/** Egress: the service named by Host/:authority, known locally or offered by another cluster. */
export function egressRoute(o: { catalog: CatalogView; local: LocalServices }): RequestLayer {
  return (next) => async (r) => {
    const authority = r.authority;
    const ref = parseClustersetHost(authority);
    if (!ref) {
      refuse(
        'unknown-service',
        `${authority.slice(0, 200) || '(no host)'} is not a <service>.<namespace>.svc.clusterset.local name`,
      );
    }
    if (!o.local.get(ref) && o.catalog.instances(ref.namespace, ref.name).length === 0) {
      refuse(
        'unknown-service',
        `no cluster offers ${ref.name}.${ref.namespace}; is it exported? (meshfed services)`,
      );
    }
    r.route = {
      namespace: ref.namespace,
      name: ref.name,
      scope: 'any',
      ...(ref.port ? { port: ref.port } : {}),
      ...(ref.portName ? { portName: ref.portName } : {}),
    };
    return next(r);
  };
}

const NOT_EXPORTED = 'no exported service of this cluster has that name';

/**
 * East-west requests: the exported local service named by `x-meshfed-service` (namespace/name/port, what
 * gateways send) or by the authority (what a third-party mTLS client sends).
 */
export function tunnelRoute(o: { local: LocalServices }): RequestLayer {
  return (next) => async (r) => {
    const tunnelled = r.headers['x-meshfed-service'];
    let ref: (ServiceRef & { portName?: string }) | undefined;
    if (typeof tunnelled === 'string') {
      const [namespace, name, port] = tunnelled.split('/');
      ref = namespace && name ? { namespace, name, ...(port ? { portName: port } : {}) } : undefined;
    } else {
      ref = parseClustersetHost(r.authority);
    }
    if (!ref || !o.local.get(ref)?.exported) refuse('not-exported', NOT_EXPORTED);
    r.route = {
      namespace: ref.namespace,
      name: ref.name,
      scope: 'local',
      ...(ref.portName ? { portName: ref.portName } : {}),
    };
    return next(r);
  };
}

/**
 * CONNECT on the tunnel: `<svc>.<ns>.svc.clusterset.local:<port>` must name a port the exported service
 * declares as `tcp`. An HTTP, gRPC or TLS port is never handed a raw stream: its backend would trust
 * in-band headers (an identity header) that no gateway checked, and TLS ports have SNI passthrough.
 */
export function connectRoute(o: { local: LocalServices }): RequestLayer {
  return (next) => async (r) => {
    const ref = parseClustersetHost(r.authority);
    const svc = ref ? o.local.get(ref) : undefined;
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
