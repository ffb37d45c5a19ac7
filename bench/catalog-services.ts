import type { LocalService } from '../core/index.ts';

/** A benchmark service: two ports and `healthy` healthy endpoints (its weight in the catalog). */
export function benchService(name: string, healthy: number): LocalService {
  return {
    namespace: 'bench',
    name,
    source: 'bench',
    exported: true,
    ports: [
      { name: 'http', port: 8080, protocol: 'http' },
      { name: 'grpc', port: 9090, protocol: 'grpc' },
    ],
    endpoints: Array.from({ length: healthy }, (_, k) => ({
      host: `10.0.${k >> 8}.${k & 255}`,
      ports: { http: 8080 },
      healthy: true,
    })),
  };
}
