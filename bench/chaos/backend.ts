// The services of one chaos cluster in one process: `hello` (HTTP/1.1 JSON that names the cluster),
// `greeter` (gRPC unary and server-streaming) and `echo` (TCP echo). `--delay-ms` makes every HTTP
// and gRPC answer that slow (the slow-cluster scenario). Prints {"http","grpc","tcp"} once bound.
import { once } from 'node:events';
import { createServer as createTcpServer } from 'node:net';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { loadGreeter } from '../../cli/demo/demo-services.ts';
import { createServer } from 'node:http';

const { values } = parseArgs({
  options: { cluster: { type: 'string' }, 'delay-ms': { type: 'string', default: '0' } },
});
const cluster = values.cluster ?? 'unknown';
const delayMs = Number(values['delay-ms']);

const later = (f: () => void) => (delayMs > 0 ? setTimeout(f, delayMs) : f());

const http = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by-cluster': cluster });
      res.end(`${JSON.stringify({ cluster, method: req.method, path: req.url })}\n`);
    };
    later(answer);
  });
});
http.keepAliveTimeout = 65_000;
http.listen(0, '127.0.0.1');
await once(http, 'listening');

const tcp = createTcpServer((s) => {
  s.on('error', () => s.destroy());
  s.pipe(s);
});
tcp.listen(0, '127.0.0.1');
await once(tcp, 'listening');

const pkg = loadGreeter() as unknown as { meshfed: { demo: { Greeter: grpc.ServiceClientConstructor } } };
const grpcServer = new grpc.Server();
grpcServer.addService(pkg.meshfed.demo.Greeter.service, {
  SayHello(call: grpc.ServerUnaryCall<{ name: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
    later(() => cb(null, { message: `hello ${call.request.name}`, cluster, seq: 0 }));
  },
  SayHelloStream(call: grpc.ServerWritableStream<{ name: string; count: number }, unknown>) {
    const n = Math.min(Math.max(call.request.count || 3, 1), 100);
    later(() => {
      for (let i = 0; i < n; i++)
        call.write({ message: `hello ${call.request.name} #${i}`, cluster, seq: i });
      call.end();
    });
  },
});
const grpcPort = await new Promise<number>((resolve, reject) =>
  grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
    err ? reject(err) : resolve(p),
  ),
);

const port = (s: { address(): unknown }) => (s.address() as { port: number }).port;
process.stdout.write(
  `${JSON.stringify({ http: port(http), grpc: grpcPort, tcp: port(tcp), pid: process.pid })}\n`,
);
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
