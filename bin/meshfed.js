#!/usr/bin/env node
// The meshfed command. It runs the JavaScript that scripts/build.js makes from meshfed's TypeScript
// sources (building it first when a source changed), or the sources themselves with Node 24's type
// stripping when the build cannot be made or MESHFED_FROM_SOURCES=1 asks for them. Either way it needs
// Node.js 24: `npx meshfed` and npm scripts use the Node 24 that `npm ci` installs.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `meshfed: needs Node.js 24 or newer, found ${process.version}. Run it as "npx meshfed" inside the project ` +
      '(after "npm ci", which brings Node 24), or install Node.js 24 LTS.\n',
  );
  process.exit(1);
}
const { runnableModule } = await import('../scripts/build.js');
const main = process.env.MESHFED_FROM_SOURCES === '1' ? '../cli/main.ts' : runnableModule('cli/main.ts');
if (process.argv[2] === 'gateway' && typeof process.execve === 'function') {
  // how the daemon runs (cli/node-flags.ts, beside main in the build or the sources): the same command
  // again, same process id, with what is missing
  const nf = await import(
    new URL(main.endsWith('.ts') ? './node-flags.ts' : './node-flags.js', new URL(main, import.meta.url)).href
  );
  const flags = nf.missingNodeFlags(nf.GATEWAY_NODE_FLAGS, process.execArgv, process.env.NODE_OPTIONS);
  const env = nf.missingEnv(nf.GATEWAY_ENV, process.env);
  if (flags.length > 0 || Object.keys(env).length > 0) {
    const args = [process.execPath, ...flags, ...process.execArgv, ...process.argv.slice(1)];
    process.execve(process.execPath, args, { ...process.env, ...env });
  }
}
const { runCli } = await import(main);
const controller = new AbortController();
let interrupted = 0;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    interrupted++;
    if (interrupted > 1) process.exit(130);
    controller.abort(new Error(sig));
  });
}
const code = await runCli(process.argv.slice(2), { signal: controller.signal });
process.exitCode = code;
