// FC_SEED=N: the property tests that draw a seed of their own each run (those that pass none to fc.assert)
// use N instead, so a failure `npm run fuzz` found replays: `FC_SEED=N npm run jest -- <file>`. Without it,
// nothing is loaded (fast-check only where a test imports it).
const seed = process.env.FC_SEED;
if (seed !== undefined && seed !== '') {
  if (!/^-?[0-9]{1,10}$/.test(seed)) throw new Error(`FC_SEED must be an integer seed, got '${seed}'`);
  const { default: fc } = await import('fast-check');
  fc.configureGlobal({ ...fc.readConfigureGlobal(), seed: Number(seed) | 0 });
}
