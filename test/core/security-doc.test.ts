import { readFileSync } from 'node:fs';

// docs/security.md names, for every attack it lists, the test that performs it. A renamed or deleted
// test would leave the page claiming something nothing checks: this test fails instead.

const root = new URL('../../', import.meta.url);
const doc = readFileSync(new URL('docs/security.md', root), 'utf8');
const refs = [...doc.matchAll(/`(test\/[^`]+\.test\.ts)` › "([^"]+)"/g)].map((m) => ({
  file: m[1]!,
  name: m[2]!,
}));

test('the attack table names its tests', () => {
  expect(refs.length).toBeGreaterThanOrEqual(20);
});

test.each(refs.map((r) => [r.file, r.name]))('%s has a test named "%s"', (file, name) => {
  const text = readFileSync(new URL(file, root), 'utf8');
  expect(text.includes(`'${name}'`) || text.includes(`"${name}"`) || text.includes(`\`${name}\``)).toBe(true);
});
