/**
 * `node:http`'s exports, taken from Node's own module instead of an ES import. An `import … from 'node:http'`
 * makes Node build the module's ES namespace, which reads every export, its lazy ones too: `WebSocket`,
 * `CloseEvent` and `MessageEvent` load Node's bundled fetch implementation, about 5 MB resident in every
 * gateway from its start that nothing here uses. Types still come from `import type … from 'node:http'`.
 */
export const http = process.getBuiltinModule('node:http');
