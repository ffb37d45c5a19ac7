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
  maxWorkers: 2,
};
