// What the benchmark processes started by the peers harness and this project's bench scripts read from their
// environment (bench/peers-gateway.ts, bench/node-floor.ts).

/** The variable `k`, or `d` when it is unset; neither: an error naming the variable. */
export function env(k: string, d?: string): string {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
}

/** `127.0.0.21:25443` → host and port */
export function hostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}
