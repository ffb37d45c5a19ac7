import { once } from 'node:events';
import http, { type IncomingMessage } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { Headers } from '../../../gateway/h1/field-lines.ts';
import { LIMITS } from './frame-all.ts';
import { record } from './node-strict.ts';

/**
 * What node's own client (llhttp in response mode, strict: insecureHTTPParser false) made of a response's
 * bytes: the response it delivered, with the body it framed and whether it saw that body's end, or the
 * error that ended the request before any response.
 */
export type NodeResponse =
  | {
      kind: 'response';
      status: number;
      headers: Headers;
      body: string;
      /** node saw the body's end (res.complete) */
      complete: boolean;
      /** 1xx responses before it (node's 'information' events) */
      interim: number;
      /** an error after the response began: a body cut short, or bytes after a complete response */
      error: string | undefined;
    }
  | { kind: 'error'; code: string; interim: number };

const codeOf = (err: Error & { code?: string }) => err.code ?? err.message;

/**
 * A raw TCP server on loopback that answers each request with the given bytes and closes its side (so a
 * body delimited by the close ends there), and an `http.request` client that records what node made of
 * them. Runs are one at a time: the server answers every connection with the bytes of the current run.
 */
export async function nodeStrictClient(): Promise<{
  run(bytes: Buffer, method: string): Promise<NodeResponse>;
  close(): Promise<void>;
}> {
  let reply: Buffer | undefined;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    // the whole request head first: an answer before it could be read as the client's own write failing
    let seen = '';
    const onData = (d: Buffer) => {
      seen += d.toString('latin1');
      if (!seen.includes('\r\n\r\n')) return;
      s.off('data', onData);
      // reading on after the answer: a client write after our FIN must not meet a reset
      s.resume();
      s.end(reply ?? Buffer.alloc(0));
    };
    s.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;

  return {
    async run(bytes, method) {
      if (reply !== undefined) throw new Error('one run at a time');
      reply = bytes;
      try {
        return await request(port, method);
      } finally {
        reply = undefined;
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function request(port: number, method: string): Promise<NodeResponse> {
  const req = http.request({
    host: '127.0.0.1',
    port,
    method,
    path: '/',
    agent: false,
    insecureHTTPParser: false,
    maxHeaderSize: LIMITS.maxHeadBytes,
  });
  let interim = 0;
  let error: string | undefined;
  let res: IncomingMessage | undefined;
  const parts: Buffer[] = [];
  req.on('information', () => interim++);
  const settled = new Promise<NodeResponse>((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error('node never settled the response')), 5_000);
    const finish = (r: NodeResponse) => {
      clearTimeout(deadline);
      resolve(r);
    };
    req.on('error', (err) => {
      error ??= codeOf(err);
    });
    req.on('response', (r: IncomingMessage) => {
      res = r;
      r.on('data', (d: Buffer) => parts.push(d));
      r.on('error', (err) => {
        error ??= codeOf(err);
      });
      // after 'end' for a whole body, after 'error' for one cut short
      r.on('close', () =>
        finish({
          kind: 'response',
          status: r.statusCode ?? 0,
          headers: record(r.rawHeaders),
          body: Buffer.concat(parts).toString('latin1'),
          complete: r.complete,
          interim,
          error,
        }),
      );
    });
    req.on('close', () => {
      if (!res) finish({ kind: 'error', code: error ?? 'none', interim });
    });
  });
  req.end();
  return settled;
}
