// A jest test environment that says what a test file left running when it ended: sockets, servers and
// child processes it opened (by Node's active handles) and ref'd timers it set and never cleared. Those keep
// a jest worker alive after its last file, and jest then prints "A worker process has failed to exit
// gracefully". Opt-in, as a diagnostic: `MESHFED_LEAK_CHECK=1 npm run jest` (jest.config.js picks it);
// each file that leaves something prints one report to stderr, naming what and, for a timer, where it was set.
import NodeEnvironment from 'jest-environment-node';

/** how long teardown waits for closes already under way (a socket's 'close' comes a turn after destroy) */
const SETTLE_MS = 1_000;

function describeHandle(h) {
  const name = h?.constructor?.name ?? typeof h;
  if (name === 'Socket' || name === 'TLSSocket') {
    const local = h.localAddress ? `${h.localAddress}:${h.localPort}` : '?';
    const remote = h.remoteAddress ? `${h.remoteAddress}:${h.remotePort}` : 'unconnected';
    return `${name} ${local} -> ${remote}${h.destroyed ? ' (destroyed)' : ''}`;
  }
  if (name === 'Server') {
    const a = typeof h.address === 'function' ? h.address() : undefined;
    return `Server ${a && typeof a === 'object' ? `${a.address}:${a.port}` : (a ?? '')}`;
  }
  if (name === 'ChildProcess') return `ChildProcess pid ${h.pid} ${h.spawnfile ?? ''}`;
  return name;
}

export default class LeakCheckEnvironment extends NodeEnvironment {
  #file;
  #before = new Set();
  #timers = new Map();

  constructor(config, context) {
    super(config, context);
    this.#file = context.testPath;
  }

  async setup() {
    await super.setup();
    for (const h of process._getActiveHandles()) this.#before.add(h);
    const timers = this.#timers;
    const g = this.global;
    for (const [set, clear] of [
      ['setTimeout', 'clearTimeout'],
      ['setInterval', 'clearInterval'],
    ]) {
      const original = g[set];
      const originalClear = g[clear];
      g[set] = function (fn, ms, ...args) {
        const site = new Error().stack.split('\n').slice(2, 5).join(' | ');
        const t = original.call(this, fn, ms, ...args);
        timers.set(t, { kind: set, ms, site });
        return t;
      };
      g[clear] = function (t) {
        timers.delete(t);
        return originalClear.call(this, t);
      };
    }
  }

  async teardown() {
    const left = () => {
      const handles = process._getActiveHandles().filter((h) => !this.#before.has(h));
      const timers = [...this.#timers].filter(
        ([t, info]) =>
          typeof t?.hasRef === 'function' &&
          t.hasRef() &&
          // a fired timeout is over; an interval is not
          (info.kind === 'setInterval' || !t._destroyed),
      );
      return { handles, timers };
    };
    const deadline = Date.now() + SETTLE_MS;
    let now = left();
    while ((now.handles.length > 0 || now.timers.length > 0) && Date.now() < deadline) {
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setTimeout(r, 20).unref());
      now = left();
    }
    if (now.handles.length > 0 || now.timers.length > 0) {
      const lines = [
        ...now.handles.map((h) => `  handle: ${describeHandle(h)}`),
        ...now.timers.map(([, i]) => `  ${i.kind}(${i.ms} ms), ref'd, set at ${i.site}`),
      ];
      process.stderr.write(`leak-check: ${this.#file} left running:\n${lines.join('\n')}\n`);
    }
    await super.teardown();
  }
}
