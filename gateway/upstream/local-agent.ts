import { createRequire } from 'node:module';
import type { Agent } from 'undici';
import type { BalancerConfig } from '../balancer/config.ts';

/**
 * undici's Agent for local HTTP/1.1 endpoints, made on first use: only requests that reach a local HTTP/1.1
 * endpoint through node's HTTP server or the HTTP/2 tunnel take it (the fast path has its own pool), so most
 * gateways never load undici's clients and parser (about 2 MB resident that would stay from start). The
 * module is CommonJS, so the first such request loads it synchronously, once. Only the Agent class is loaded:
 * the package index also loads fetch, WebSocket, caches and mocks, about 13 MB a gateway never uses.
 */
export class LocalAgent {
  readonly #config: BalancerConfig;
  readonly #maxHeaderBytes: number;
  #agent: Agent | undefined;

  /** `maxHeaderBytes`: the largest response head taken from an endpoint (limits.maxHeaderBytes, as the fast path) */
  constructor(config: BalancerConfig, maxHeaderBytes: number) {
    this.#config = config;
    this.#maxHeaderBytes = maxHeaderBytes;
  }

  get(): Agent {
    if (this.#agent) return this.#agent;
    const bc = this.#config;
    const UndiciAgent = createRequire(import.meta.url)('undici/lib/dispatcher/agent.js') as typeof Agent;
    this.#agent = new UndiciAgent({
      // circuitBreaker.maxConnections per local endpoint; requests past it wait (circuitBreaker.maxPending)
      connections: bc.circuitBreaker.maxConnections,
      connect: { timeout: bc.timeouts.connect },
      headersTimeout: bc.timeouts.request,
      bodyTimeout: bc.timeouts.idle,
      keepAliveTimeout: bc.timeouts.idle,
      // undici's default is node's 16 KiB: a response head the fast path forwards was a 502 on this path
      maxHeaderSize: this.#maxHeaderBytes,
    });
    return this.#agent;
  }

  close(): void {
    void this.#agent?.destroy();
  }
}
