import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * The demo's services. `hello` answers JSON naming the cluster that served it; `greeter` is a gRPC
 * service (unary and server-streaming) whose replies also name its release (`v1`, or `v2` for the canary
 * the policy phase shifts traffic to). Both echo the caller identity meshfed passed on, so the demo
 * shows that identity survives the gateways.
 */

export const GREETER_PROTO = fileURLToPath(new URL('./greeter.proto', import.meta.url));

export interface HelloService {
  server: Server;
  port: number;
  close(): Promise<void>;
}

export async function startHelloService(o: {
  cluster: string;
  service: string;
  host?: string;
  port?: number;
}): Promise<HelloService> {
  let served = 0;
  const server = createServer((req, res) => {
    served++;
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 64 * 1024) chunks.push(c);
    });
    req.on('end', () => {
      const body = JSON.stringify({
        service: o.service,
        cluster: o.cluster,
        path: req.url,
        method: req.method,
        served,
        peerIdentity: req.headers['x-meshfed-peer-identity'] ?? null,
        traceparent: req.headers.traceparent ?? null,
        bodyBytes: size,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by-cluster': o.cluster });
      res.end(`${body}\n`);
    });
  });
  server.keepAliveTimeout = 65_000;
  server.listen(o.port ?? 0, o.host ?? '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    server,
    port,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

interface HelloRequest {
  name: string;
  count: number;
}

export interface GreeterService {
  port: number;
  close(): Promise<void>;
}

export function loadGreeter(): grpc.GrpcObject {
  const def = protoLoader.loadSync(GREETER_PROTO, { keepCase: true, longs: Number, defaults: true });
  return grpc.loadPackageDefinition(def);
}

export async function startGreeterService(o: {
  cluster: string;
  /** the release this instance is (default v1); a v2 greeter says so in every reply */
  version?: string;
  host?: string;
  port?: number;
}): Promise<GreeterService> {
  const version = o.version ?? 'v1';
  const greeting = (name: string) =>
    version === 'v1' ? `hello ${name}` : `hello ${name} (greeter ${version})`;
  const pkg = loadGreeter() as unknown as { meshfed: { demo: { Greeter: grpc.ServiceClientConstructor } } };
  const server = new grpc.Server();
  server.addService(pkg.meshfed.demo.Greeter.service, {
    SayHello(call: grpc.ServerUnaryCall<HelloRequest, unknown>, cb: grpc.sendUnaryData<unknown>) {
      if (call.request.name === 'fail') {
        cb({ code: grpc.status.FAILED_PRECONDITION, details: `greeter in ${o.cluster} refuses "fail"` });
        return;
      }
      const md = new grpc.Metadata();
      md.set('x-served-by-cluster', o.cluster);
      cb(null, { message: greeting(call.request.name), cluster: o.cluster, seq: 0, version }, md);
    },
    SayHelloStream(call: grpc.ServerWritableStream<HelloRequest, unknown>) {
      const n = Math.min(Math.max(call.request.count || 3, 1), 1000);
      for (let i = 0; i < n; i++)
        call.write({ message: `${greeting(call.request.name)} #${i}`, cluster: o.cluster, seq: i, version });
      const trailer = new grpc.Metadata();
      trailer.set('x-served-by-cluster', o.cluster);
      call.end(trailer);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${o.host ?? '127.0.0.1'}:${o.port ?? 0}`,
      grpc.ServerCredentials.createInsecure(),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => server.forceShutdown(), 2000).unref();
      }),
  };
}
