/**
 * The Node.js (V8) flags `meshfed gateway` runs with. They cannot be set from inside a running process (V8 sizes
 * its heap at start), so bin/meshfed.js re-executes the gateway once with the ones missing, before anything else
 * loads. What an operator gives Node for the same option (NODE_OPTIONS, node's own arguments) wins.
 *
 * `--max-semi-space-size=4` (MB): V8 grows its young generation to 2 × 32 MB during a catalog sync burst and keeps
 * it, 56 MB of a 100,000-entry view's resident memory for nothing; capped, the same sync takes the same CPU time
 * (docs/performance.md, "Catalog view memory").
 */
export const GATEWAY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];

/** The flags of `wanted` whose option (the part before `=`) neither `execArgv` nor `NODE_OPTIONS` sets already. */
export function missingNodeFlags(
  wanted: readonly string[],
  execArgv: readonly string[],
  nodeOptions: string | undefined,
): string[] {
  const given = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].map(optionName);
  return wanted.filter((flag) => !given.includes(optionName(flag)));
}

/** `--max-semi-space-size=4` → `max-semi-space-size`; V8 reads `_` and `-` alike */
function optionName(arg: string): string {
  return arg.replace(/^-+/, '').split('=')[0]!.replaceAll('_', '-');
}
