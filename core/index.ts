export * from './catalog.ts';
export * from './config.ts';
export * from './errors.ts';
export * from './logger.ts';
export * from './metrics.ts';
export * from './wait.ts';
