// The dashboard: every node's figures from /v1/admin/stats, read every
// few seconds; rates are taken between two reads, and 15 minutes of them
// are kept here, in the page, for the charts. The actions call the admin
// API with the session cookie the login form set.

import { pauseBound } from './pause.js';

const params = new URLSearchParams(location.search);
const INTERVAL = Number(params.get('interval')) || 2000;
const KEEP = 15 * 60 * 1000;

const prev = new Map(); // node -> its last snapshot
const history = new Map(); // chart id -> [{t, v}]

const $ = (sel) => document.querySelector(sel);

// The charts: what each shows, from the cluster's current and previous reads.
const charts = [
  { id: 'connections', label: 'online connections', value: (c) => c.gauge('longlink_connections'), fmt: int },
  { id: 'logins', label: 'logins /s', value: (c) => c.rate('longlink_connects_total'), fmt: num },
  { id: 'disconnects', label: 'disconnects /s', value: (c) => c.rate('longlink_disconnects_total'), fmt: num },
  { id: 'pushes', label: 'API pushes /s', value: (c) => c.rate('longlink_messages_pushed_total'), fmt: num },
  { id: 'deliveries', label: 'deliveries /s', value: (c) => c.rate('longlink_messages_delivered_total'), fmt: num },
  { id: 'stored', label: 'stored messages written /s', value: (c) => c.rate('longlink_stored_total'), fmt: num },
  { id: 'acks', label: 'acks /s', value: (c) => c.rate('longlink_acks_total'), fmt: num },
  { id: 'upstream', label: 'upstream calls /s', value: (c) => c.rate('longlink_upstream_calls_total'), fmt: num },
  { id: 'upstream-ok', label: 'upstream success', value: (c) => ratio(c.rate('longlink_upstream_calls_total', { result: 'answered' }), c.rate('longlink_upstream_calls_total')), fmt: pct },
  { id: 'upstream-latency', label: 'upstream latency (mean)', value: (c) => ratio(c.rate('longlink_upstream_seconds_sum'), c.rate('longlink_upstream_seconds_count')), fmt: secs },
  { id: 'backlog', label: 'webhook backlog', value: (c) => c.gauge('longlink_upstream_backlog') + c.gauge('longlink_status_backlog'), fmt: int },
  { id: 'rss', label: 'RSS, all nodes', value: (c) => c.gauge('process_resident_memory_bytes'), fmt: bytes },
  { id: 'cpu', label: 'CPU, all nodes', value: (c) => c.rate('process_cpu_seconds_total'), fmt: pct },
  { id: 'goroutines', label: 'goroutines, all nodes', value: (c) => c.gauge('go_goroutines'), fmt: int },
];

// view reads the figures of some nodes: gauges now, rates since the last read.
function view(nodes) {
  const sum = (samples, name, match) => samples.filter((s) => s.name === name && matches(s, match)).reduce((a, s) => a + s.value, 0);
  return {
    gauge: (name, match) => nodes.reduce((a, n) => a + sum(n.samples, name, match), 0),
    rate: (name, match) => nodes.reduce((a, n) => {
      const p = prev.get(n.node);
      if (!p || p.started_at !== n.started_at) return a; // a first read, or a restarted node
      const dt = (Date.parse(n.at) - Date.parse(p.at)) / 1000;
      return dt > 0 ? a + Math.max(sum(n.samples, name, match) - sum(p.samples, name, match), 0) / dt : a;
    }, 0),
  };
}

function matches(s, match) {
  return !match || Object.entries(match).every(([k, v]) => s.labels?.[k] === v);
}

function ratio(a, b) { return b > 0 ? a / b : NaN; }
function int(v) { return Number.isFinite(v) ? Math.round(v).toLocaleString('en') : '–'; }
function num(v) { return Number.isFinite(v) ? (v >= 100 ? Math.round(v).toLocaleString('en') : v.toFixed(1)) : '–'; }
function pct(v) { return Number.isFinite(v) ? `${(v * 100).toFixed(1)}%` : '–'; }
function secs(v) { return Number.isFinite(v) ? (v < 1 ? `${(v * 1000).toFixed(1)} ms` : `${v.toFixed(2)} s`) : '–'; }
function bytes(v) {
  if (!Number.isFinite(v)) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// gcPauseMax bounds the longest stop-the-world GC pause since the last read.
function gcPauseMax(n) {
  const p = prev.get(n.node);
  return p && p.started_at === n.started_at ? pauseBound(p.samples, n.samples) : NaN;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

// setRows fills a table's body; each cell takes its column header's class
// (num: right-aligned).
function setRows(table, rows) {
  const classes = [...document.querySelectorAll(`${table} thead th`)].map((th) => th.className);
  const cell = (c, i) => el('td', classes[i] ? { class: classes[i] } : {}, c instanceof Node ? c : String(c));
  $(`${table} tbody`).replaceChildren(...rows.map((cells) => el('tr', {}, ...cells.map(cell))));
}

function drawCharts(cluster, now) {
  const box = $('#charts');
  for (const c of charts) {
    const v = c.value(cluster);
    const h = history.get(c.id) ?? [];
    h.push({ t: now, v });
    while (h.length && h[0].t < now - KEEP) h.shift();
    history.set(c.id, h);
    let card = box.querySelector(`[data-chart="${c.id}"]`);
    if (!card) {
      card = el('div', { class: 'chart', 'data-chart': c.id }, el('div', { class: 'label' }, c.label), el('div', { class: 'value', 'data-figure': c.id }, '–'));
      card.insertAdjacentHTML('beforeend', '<svg viewBox="0 0 100 40" preserveAspectRatio="none"><polyline/></svg>');
      box.append(card);
    }
    card.querySelector('.value').textContent = c.fmt(v);
    // x: from the oldest point kept (at most 15 minutes ago) to now.
    const pts = h.filter((p) => Number.isFinite(p.v));
    const top = Math.max(...pts.map((p) => p.v), 1e-9);
    const span = Math.max(now - h[0].t, 1);
    card.querySelector('polyline').setAttribute('points', pts.map((p) => `${(100 * (p.t - h[0].t)) / span},${38 - (36 * p.v) / top}`).join(' '));
  }
}

// PER_CONN_FROM is the fewest connections a node's memory per connection
// is shown for: below, it is the process's own memory over a few.
const PER_CONN_FROM = 100;

function drawNodes(nodes) {
  setRows('#nodes', nodes.map((n, i) => {
    const one = view([n]);
    const conns = one.gauge('longlink_connections');
    const rss = one.gauge('process_resident_memory_bytes');
    const drain = el('button', { class: 'danger', 'data-drain': n.node }, i === 0 ? 'Drain (this node)' : 'Drain');
    drain.onclick = () => drainNode(n.node);
    // Per connection only where connections, not the process's base, make
    // most of the memory.
    return [n.node, n.state, int(conns), pct(one.rate('process_cpu_seconds_total')), bytes(rss), conns >= PER_CONN_FROM ? bytes(rss / conns) : '–',
      int(one.gauge('go_goroutines')), secs(gcPauseMax(n)), new Date(n.started_at).toLocaleString(), drain];
  }));
}

function drawApps(nodes) {
  const by = new Map();
  const reasons = new Map();
  for (const n of nodes) {
    for (const s of n.samples) {
      if (s.name === 'longlink_connections') {
        const k = `${s.labels.app}\0${s.labels.transport}`;
        by.set(k, (by.get(k) ?? 0) + s.value);
      }
      if (s.name === 'longlink_disconnects_total') reasons.set(s.labels.reason, (reasons.get(s.labels.reason) ?? 0) + s.value);
    }
  }
  setRows('#apps', [...by].filter(([, v]) => v > 0).sort().map(([k, v]) => [...k.split('\0'), int(v)]));
  const c = view(nodes);
  setRows('#reasons', [...reasons].sort().map(([r, total]) => [r, num(c.rate('longlink_disconnects_total', { reason: r })), int(total)]));
  const groups = new Map();
  for (const n of nodes) {
    for (const s of n.samples) {
      if (s.name === 'longlink_client_connect_seconds_count' || s.name === 'longlink_client_rtt_seconds_count' || s.name === 'longlink_client_connect_failures_total') {
        groups.set(`${s.labels.app}\0${s.labels.transport}\0${s.labels.network}`, s.labels);
      }
    }
  }
  const quality = [...groups.values()].map((l) => {
    const avg = (name) => {
      const total = (suffix) => c.gauge(name + suffix, l);
      return ratio(total('_sum'), total('_count'));
    };
    return [l.app, l.transport, l.network, secs(avg('longlink_client_rtt_seconds')), secs(avg('longlink_client_connect_seconds')),
      num(c.rate('longlink_client_connect_failures_total', l))];
  });
  setRows('#quality', quality.length ? quality
    : [[el('span', { class: 'note' }, 'no data yet: devices send it with the stats op (the SDKs do, every few minutes)'), '', '', '', '', '']]);
}

async function call(method, path, body) {
  const resp = await fetch(path, { method, headers: { 'Content-Type': 'application/json' }, body: body && JSON.stringify(body) });
  const json = await resp.json().catch(() => ({}));
  if (resp.status === 401) location.reload(); // the session ended: the login page
  if (!resp.ok) throw new Error(json.error ?? `${resp.status}`);
  return json;
}

async function refresh() {
  try {
    const { nodes } = await call('GET', '/v1/admin/stats');
    const now = Date.now();
    drawCharts(view(nodes), now);
    drawNodes(nodes);
    drawApps(nodes);
    for (const n of nodes) prev.set(n.node, n);
    $('#status').textContent = `${nodes.length} node${nodes.length === 1 ? '' : 's'} · updated ${new Date(now).toLocaleTimeString()}`;
    $('#status').classList.remove('error');
  } catch (err) {
    $('#status').textContent = `cannot read the figures: ${err.message}`;
    $('#status').classList.add('error');
  }
  setTimeout(refresh, INTERVAL);
}

function deviceForm() {
  const f = new FormData($('#device-form'));
  return { app: f.get('app'), device: f.get('device'), data: f.get('data'), stored: f.get('stored') === 'on' };
}

async function show(out, work) {
  try {
    out.textContent = JSON.stringify(await work(), null, 2);
  } catch (err) {
    out.textContent = `error: ${err.message}`;
  }
}


$('#device-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const { app, device } = deviceForm();
  show($('#device-out'), () => call('GET', `/v1/admin/devices/${encodeURIComponent(app)}/${encodeURIComponent(device)}`));
});
$('#kick').addEventListener('click', () => {
  const { app, device } = deviceForm();
  if (!device || !confirm(`Kick ${device} of ${app}? Its connection is closed with 4008.`)) return;
  show($('#device-out'), () => call('POST', '/v1/admin/kick', { app, devices: [device] }));
});
$('#push').addEventListener('click', () => {
  const { app, device, data, stored } = deviceForm();
  if (device) show($('#device-out'), () => call('POST', '/v1/admin/push', { app, devices: [device], data, ttl: stored ? 3600 : 0 }));
});
// drainNode drains a node of the cluster (this one, or another through it).
function drainNode(node) {
  if (!confirm(`Drain ${node}? Its devices move to the other nodes, then it exits.`)) return;
  $('#node-out').hidden = false;
  show($('#node-out'), () => call('POST', `/v1/admin/drain?node=${encodeURIComponent(node)}`));
}

refresh();
