import { type EndpointSource, type LocalService, type ServiceRef, serviceKey } from '../core/index.ts';

/** This cluster's services, indexed by service key and kept current from the endpoint source. */
export class LocalServices {
  #index = new Map<string, LocalService>();
  readonly #unsubscribe: () => void;

  constructor(source: EndpointSource) {
    const reindex = (s: readonly LocalService[]) => {
      this.#index = new Map(s.map((x) => [serviceKey(x), x]));
    };
    reindex(source.current());
    this.#unsubscribe = source.onChange(reindex);
  }

  get(ref: ServiceRef): LocalService | undefined {
    return this.#index.get(serviceKey(ref));
  }

  stop(): void {
    this.#unsubscribe();
  }
}
