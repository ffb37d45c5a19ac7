// @peculiar/x509 resolves its algorithms through tsyringe, which needs a Reflect metadata polyfill loaded first.
// Every ca/ module imports the library through this file so the order always holds.
import 'reflect-metadata';
import * as px from '@peculiar/x509';

px.cryptoProvider.set(globalThis.crypto);

export { px };
