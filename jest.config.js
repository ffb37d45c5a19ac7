/** jest runs TypeScript through swc (TypeScript 7 has no JS compiler API, so ts-jest cannot work). */
export default {
  // MESHFED_LEAK_CHECK=1: each test file reports the sockets, servers, children and timers it left running
  testEnvironment: process.env.MESHFED_LEAK_CHECK === '1' ? '<rootDir>/test/leak-check-env.js' : 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      { jsc: { parser: { syntax: 'typescript' }, target: 'es2023' }, module: { type: 'es6' } },
    ],
  },
  testMatch: ['<rootDir>/**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/.bench-peers/'],
  testTimeout: 60_000,
  // spawned gateways run the build of the sources under test (bin/meshfed.js): make it once, up front
  globalSetup: '<rootDir>/test/build-before-tests.js',
  // FC_SEED=N replays a property test that draws its own seed (scripts/fuzz.sh prints it with a failure)
  setupFilesAfterEnv: ['<rootDir>/test/fast-check-seed.js'],
  maxWorkers: 2,
  // Under --experimental-vm-modules (the ESM tests need it) a jest worker never frees a test file's vm context
  // and the modules evaluated in it (jestjs/jest#14605): 3 MB more heap after an empty test file, 13 MB after
  // the average one here, ~1 GB by the end of a full run. A Node exiting with that much heap frees it page by
  // page, 0.6-0.8 s on a 2-CPU host: past the 0.5 s jest waits before it kills the worker and prints "A worker
  // process has failed to exit gracefully". Past this much heap after a file, jest replaces the worker with a
  // fresh one (8 times in a full run), and the last ones exit in 0.1-0.2 s.
  workerIdleMemoryLimit: '256MiB',
};
