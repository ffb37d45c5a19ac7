/**
 * Where the connections a gateway dials read: the pool's, plain to local endpoints and mTLS to remote gateways
 * (h1/pool.ts; a TLS socket decrypts into it), and the byte relays' to local endpoints (endpoint-relay.ts,
 * dialEndpoint: SNI passthrough, a TCP port's, the CONNECT terminal's). They read one at a time, on this thread,
 * and each read is copied out before anything else runs; made by the first dial, so a gateway that never dials
 * does not allocate it. Node otherwise reads a socket into a fresh 64 KiB allocation each time, which glibc maps
 * on its own whenever the top of its heap is short (the gateway runs with MALLOC_MMAP_THRESHOLD_=65537,
 * cli/node-flags.ts): under 64 KiB bodies that mapping came and went with every response from a local endpoint and
 * cost the path 20-45 % of its throughput while it lasted (docs/performance.md, "Sixth round"), and a passthrough
 * relay spent 9 % of its CPU in malloc and free of those buffers ("Eleventh round"). 64 bytes short of 64 KiB, so
 * that the copy of a full read stays below the threshold and comes from malloc's heap.
 */
let readBuffer: Buffer | undefined;

/**
 * The `onread` option of a connection a gateway dials (net.connect's and tls.connect's): reads land in
 * readBuffer, and `to` gets a copy of each (whoever gets the bytes may keep them, or queue them in a socket's
 * write buffer, past the next read). When `to` returns false the socket stops reading until its `resume()`
 * (backpressure).
 */
export function sharedReads(to: (d: Buffer) => boolean | undefined): {
  buffer: Buffer;
  callback: (n: number, b: Buffer) => boolean;
} {
  readBuffer ??= Buffer.allocUnsafe(64 * 1024 - 64);
  return {
    buffer: readBuffer,
    callback: (n, b) => to(Buffer.from(b.subarray(0, n))) !== false,
  };
}
