// meshfed dashboard: renders the state the gateway streams at /ui/events (server-sent events).
// Every value is set as text (never as HTML), and every colour has a word beside it.

const SVG = 'http://www.w3.org/2000/svg';

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// a width set through the CSSOM, which the page's Content-Security-Policy allows (a style attribute it would not)
function bar(percent) {
  const b = el('span', { class: 'share', 'aria-hidden': 'true' });
  b.style.width = `${percent}px`;
  return b;
}

const word = (w) => el('span', { class: `word ${w}` }, w);
const pct = (r) => `${(r * 100).toFixed(1)}%`;
const ms = (v) => (v >= 100 ? `${Math.round(v)} ms` : `${v.toFixed(1)} ms`);
const rps = (v) => v.toFixed(1);
const num = (v) => el('td', { class: 'num' }, v);

function linkState(l) {
  if (l.requests === 0) return 'idle';
  return l.successRate < 0.95 ? 'failing' : 'ok';
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function renderClusters(s) {
  fill(
    document.querySelector('#clusters tbody'),
    s.clusters.map((c) =>
      el(
        'tr',
        { 'data-cluster': c.name },
        el('th', { scope: 'row' }, c.self ? `${c.name} (this gateway)` : c.name),
        el('td', {}, c.region ? `${c.region}/${c.zone}` : 'not announced'),
        el('td', {}, c.gateways.map((g) => (g.address ? `${g.name} ${g.address}` : g.name)).join(', ')),
        el('td', {}, word(c.stale ? 'stale' : 'live')),
      ),
    ),
  );
}

// who measured a link: this gateway, or the gateways of the cluster the calls leave (their report)
function measuredBy(l) {
  if (!l.reportedBy) return 'this gateway';
  const n = l.reportedBy.gateways;
  const age = (l.reportedBy.ageMs / 1000).toFixed(1);
  return `${l.from}'s ${n === 1 ? 'gateway' : `${n} gateways`} (reported ${age} s ago)`;
}

function renderLinks(s) {
  fill(
    document.querySelector('#links tbody'),
    s.links.map((l) =>
      el(
        'tr',
        { 'data-from': l.from, 'data-to': l.to, 'data-measured': l.reportedBy ? 'reported' : 'here' },
        el('td', {}, l.from),
        el('td', {}, l.to),
        num(rps(l.rps)),
        num(l.requests ? pct(l.successRate) : '—'),
        num(l.requests ? ms(l.p99Ms) : '—'),
        el('td', {}, word(linkState(l))),
        el('td', {}, measuredBy(l)),
      ),
    ),
  );
}

function renderTopology(s) {
  const root = document.getElementById('topology');
  const title = root.querySelector('title');
  const w = 640;
  const h = 360;
  // an ellipse wider than high: the labels are wider than high too
  const rx = w / 2 - 120;
  const ry = h / 2 - 50;
  const at = new Map();
  s.clusters.forEach((c, i) => {
    const a = (2 * Math.PI * i) / s.clusters.length - Math.PI / 2;
    at.set(c.name, { x: w / 2 + rx * Math.cos(a), y: h / 2 + ry * Math.sin(a) });
  });
  const links = [];
  for (const l of s.links) {
    const a = at.get(l.from);
    const b = at.get(l.to);
    if (!a || !b) continue;
    // the two directions of a pair share a line: each label sits at its middle, on its own side (labels
    // nearer a node run into its circle)
    const side = l.from < l.to ? -1 : 1;
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const len = Math.hypot(dx, dy) || 1;
    const mx = a.x + dx / 2 + (side * 20 * -dy) / len;
    const my = a.y + dy / 2 + (side * 20 * dx) / len;
    const state = linkState(l);
    const figures = l.requests ? `${rps(l.rps)} req/s, ${pct(l.successRate)} ok, p99 ${ms(l.p99Ms)}` : 'idle';
    const by = l.reportedBy ? `, reported by ${measuredBy(l)}` : '';
    links.push(
      svg(
        'g',
        {
          class: `link ${state === 'ok' ? 'busy' : state}${l.reportedBy ? ' reported' : ''}`,
          tabindex: 0,
          role: 'img',
          'aria-label': `link ${l.from} to ${l.to}: ${figures} (${state})${by}`,
        },
        svg('line', { x1: a.x, y1: a.y, x2: b.x, y2: b.y }),
        // two short lines, not one long one: the labels of a busy federation then overlap less
        svg(
          'text',
          { x: mx, y: my },
          svg('tspan', { x: mx, dy: '-0.2em' }, `${l.from}→${l.to}`),
          svg('tspan', { x: mx, dy: '1.1em' }, figures),
        ),
      ),
    );
  }
  const nodes = s.clusters.map((c) => {
    const p = at.get(c.name);
    const label = `${c.name}${c.self ? ' (here)' : ''}${c.stale ? ' STALE' : ''}`;
    return svg(
      'g',
      {
        class: `node${c.self ? ' self' : ''}${c.stale ? ' stale' : ''}`,
        tabindex: 0,
        role: 'img',
        'aria-label': `cluster ${c.name}, ${c.region}/${c.zone}, ${c.stale ? 'stale' : 'live'}${c.self ? ', this gateway' : ''}`,
        'data-cluster': c.name,
      },
      svg('circle', { cx: p.x, cy: p.y, r: 34 }),
      svg('text', { x: p.x, y: p.y + 5 }, label),
    );
  });
  root.replaceChildren(title, ...links, ...nodes);
}

function renderServices(s) {
  const rows = [];
  for (const svc of s.services) {
    svc.offers.forEach((o, i) => {
      const share = Math.round(o.traffic.share * 100);
      rows.push(
        el(
          'tr',
          { 'data-service': svc.service, 'data-cluster': o.cluster },
          i === 0
            ? el('th', { scope: 'row', rowspan: svc.offers.length }, svc.service)
            : document.createTextNode(''),
          el('td', {}, o.local ? `${o.cluster} (local)` : o.cluster),
          el('td', {}, `${o.region}/${o.zone}`),
          num(o.weight),
          el('td', {}, word(o.stale ? 'stale' : o.health)),
          el('td', { class: 'num' }, bar(share), `${share}%`),
          num(rps(o.traffic.rps)),
          num(o.traffic.requests ? pct(o.traffic.successRate) : '—'),
          num(o.traffic.requests ? ms(o.traffic.p99Ms) : '—'),
        ),
      );
    });
  }
  fill(document.querySelector('#services tbody'), rows);
}

function renderEvents(s) {
  const list = document.getElementById('events');
  const items = s.events.map((e) =>
    el(
      'li',
      { 'data-kind': e.kind },
      el('time', { datetime: new Date(e.atMs).toISOString() }, new Date(e.atMs).toLocaleTimeString()),
      word(e.kind),
      ` ${e.text}`,
    ),
  );
  if (items.length === 0)
    items.push(el('li', { 'data-kind': 'none' }, 'nothing has happened since this page opened'));
  list.replaceChildren(...items);
}

function renderRefusals(s) {
  const rows = s.refusals.map((r) =>
    el('tr', {}, el('td', {}, r.what), el('td', {}, r.reason), num(r.count)),
  );
  if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 3 }, 'none')));
  fill(document.querySelector('#refusals tbody'), rows);
}

function renderPolicy(s) {
  const box = document.getElementById('policy');
  if (!s.policy) {
    box.replaceChildren(el('p', {}, 'No policy configured.'));
    return;
  }
  const splits = (s.policy.splits ?? []).map((sp) =>
    el(
      'li',
      {},
      `${sp.service}: `,
      Object.entries(sp.weights)
        .map(([c, w]) => `${c} ${w}`)
        .join(', '),
    ),
  );
  box.replaceChildren(el('p', {}, `Revision in force: ${s.policy.revision}`), el('ul', {}, ...splits));
}

function render(s) {
  document.getElementById('self').textContent = `— ${s.self.gateway} of cluster ${s.self.cluster}`;
  for (const w of document.querySelectorAll('.window')) w.textContent = String(s.windowSeconds);
  renderTopology(s);
  renderClusters(s);
  renderLinks(s);
  renderServices(s);
  renderEvents(s);
  renderRefusals(s);
  renderPolicy(s);
}

function status(state, text) {
  const p = document.getElementById('feed-status');
  p.dataset.state = state;
  p.textContent = text;
}

async function start() {
  try {
    const res = await fetch('/ui/state');
    if (res.ok) render(await res.json());
  } catch {
    // the event stream below brings the state as soon as it connects
  }
  const feed = new EventSource('/ui/events');
  feed.addEventListener('state', (ev) => {
    const s = JSON.parse(ev.data);
    render(s);
    status('live', `live — updated ${new Date(s.atMs).toLocaleTimeString()}`);
  });
  feed.addEventListener('failure', (ev) =>
    status('reconnecting', `the gateway could not build the state: ${JSON.parse(ev.data).error}`),
  );
  feed.onerror = () => status('reconnecting', 'reconnecting to the gateway…');
}

start();
