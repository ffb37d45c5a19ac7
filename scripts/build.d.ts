export declare const BUILD_DIR: string;
export declare function builtModule(rel: string): string | undefined;
export declare function build(): Promise<number>;
export declare function ensureBuilt(): { ok: true } | { ok: false; reason: string };
export declare function runnableModule(rel: string): string;
