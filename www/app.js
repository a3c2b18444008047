// The demo page: one mesh member per browser profile (or per `db`). Query parameters:
//   ?venue=NAME            venue to join (default "demo")
//   &broker=ws://host:port broker URL(s), comma separated (default ws://<this host>:9001)
//   &db=NAME               IndexedDB name = device identity (tests and "New device tab" give each page its own)
//   &kind=ipad|kiosk|pos|phone|other   device kind for the hub score (else the last one picked here)
//   &hb=MS                 heartbeat interval (300 = fast failover)
//   &drain=MS              the hub uploads to the cloud at least this often (default here 5000,
//                          so cloud_ack shows within seconds; the library's default is 30000)
//   &room=NAME             chat room (default "lobby")
//   #user=NAME&pass=SECRET broker account (in the fragment: never sent to a server)
//   &admin=1               a new device asks the venue server for an admin certificate (may invite
//                          and revoke devices: the manager's iPad)
//   &code=ABCD-…           a new device pairs with this code from an admin device (www/trust.js)
//
// Sales move pending → peer_ack (a majority of the replication factor 3 hold
// it) → cloud_ack (the hub uploaded it and the cloud stored it) on their own;
// `bash scripts/demo` runs the reference ingest (tests/ingest/ingest.py) as the
// cloud for venue "demo" with the default key.
//
// Plain ES module, no framework, Safari-safe: no Battery or Network
// Information API here (the library uses them where they exist), no
// top-level await. The view is refreshed from the mesh's events and a
// 1 s poll of getDetailedStats(). window.mesh is kept for tests and the console.
//
// The chat is the mesh's own messaging: joinRoom(room), send(room, text) and
// the `message` event (each message exactly once, over a WebRTC data channel,
// a BroadcastChannel between tabs or the broker, whichever is best per peer).
import init, { VenueMesh, version } from '../pkg/venuemesh.js';
import { openPaired, setupTrust, renderTrust } from './trust.js';
import { setupState } from './state.js';

const params = new URLSearchParams(location.search);
const venue = params.get('venue') || 'demo';
const brokers = (params.get('broker') || `ws://${location.hostname || '127.0.0.1'}:9001`).split(',').map((s) => s.trim()).filter(Boolean);
const dbName = params.get('db') || `venuemesh-${venue}`;
// Broker credentials (username, password) from the URL fragment `#user=…&pass=…`,
// which the browser never sends to a server (scripts/demo prints the link).
// The shipped broker configs admit no anonymous client.
const brokerAuth = (() => {
  const h = new URLSearchParams(location.hash.slice(1));
  return h.get('user') ? { username: h.get('user'), password: h.get('pass') ?? undefined } : {};
})();
const DEMO_DRAIN_MS = 5000;
const drainMs = Number(params.get('drain')) > 0 ? Number(params.get('drain')) : DEMO_DRAIN_MS;
const KINDS = ['pos', 'kiosk', 'ipad', 'phone', 'other'];
const FACTOR = 3; // replicationFactor (also the library's default): peer_ack = a majority of it durable
const QUORUM = Math.floor(FACTOR / 2) + 1;
const STATUSES = ['pending', 'peer_ack', 'cloud_ack', 'failed'];
const COUNT_KEYS = { pending: 'pending', peer_ack: 'peerAck', cloud_ack: 'cloudAck', failed: 'failed' };
const ITEMS = [
  { name: 'Espresso', cents: 240 }, { name: 'Cappuccino', cents: 350 }, { name: 'Croissant', cents: 280 },
  { name: 'Water', cents: 150 }, { name: 'Sandwich', cents: 690 }, { name: 'Beer', cents: 520 },
];
const room = params.get('room') || 'lobby';
const ROUTES = [['rtc', 'WebRTC'], ['tab', 'Tab'], ['broker', 'Broker']]; // the columns of #routes
const SETTINGS = `vm-demo:${dbName}:`; // localStorage prefix for what the user picked on this device

const $ = (id) => document.getElementById(id);
const dec = new TextDecoder();
const short = (id) => (id ? String(id).slice(0, 8) : '–');
const money = (cents) => `€${(cents / 100).toFixed(2)}`;
const time = (ms) => new Date(ms).toLocaleTimeString();

let mesh = null;
let chatReady = false;
let lastCounts = '';
let lastSale = null; // { item, id }: its status is shown live under the items
const deviceRows = new Map(); // device id → its <tr>
const routeRows = new Map(); // peer id → its <tr> in #routes
const peerKinds = new Map(); // device id → kind, from the peer list (for chat names)

// --- small DOM helpers ------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-')) node.setAttribute(k, String(v));
    else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function setText(node, text) { if (node.textContent !== text) node.textContent = text; }

function log(text, kind = '') {
  const list = $('log');
  list.prepend(el('li', { class: kind }, el('time', {}, time(Date.now())), ' ', text));
  while (list.children.length > 200) list.lastChild.remove();
}

function banner(text, action) {
  const b = $('banner');
  b.textContent = text;
  if (action) {
    const btn = el('button', { type: 'button', class: 'secondary' }, action.label);
    btn.addEventListener('click', action.run);
    b.append(' ', btn);
  }
  b.hidden = false;
}

function setConn(state, text) {
  const pill = $('conn');
  pill.dataset.state = state;
  pill.textContent = text;
  pill.className = `pill ${state === 'connected' ? 'pill-on' : 'pill-off'}`;
}

/** "3 commands (…a1b2c3d4e5, …)" for the log: the first few ids, shortened. */
function idList(list) {
  const shown = list.slice(0, 3).map((id) => `…${id.slice(-10)}`).join(', ');
  const more = list.length > 3 ? `, +${list.length - 3}` : '';
  return `${list.length} command${list.length === 1 ? '' : 's'} (${shown}${more})`;
}

function ago(ms) {
  if (ms < 1000) return 'now';
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  return `${Math.round(ms / 60_000)} min`;
}

// --- rendering ----------------------------------------------------------------
function renderRole(stats) {
  const role = $('role');
  role.dataset.role = stats.role;
  role.textContent = stats.role === 'hub' ? 'HUB' : stats.role === 'candidate' ? 'electing…' : 'follower';
  const hub = stats.hub;
  $('hub').dataset.hub = hub ? hub.hub : '';
  $('hub').textContent = hub ? (hub.hub === stats.deviceId ? `${short(hub.hub)} (this device)` : short(hub.hub)) : 'none yet';
  $('term').textContent = hub ? String(hub.number) : '–';
}

function renderDevices(stats) {
  const hubId = stats.hub ? stats.hub.hub : null;
  const rows = [{
    device: stats.deviceId, kind: stats.deviceInfo.kind, score: stats.score, self: true,
    role: stats.role, seen: 0, queue: stats.queue.pending,
  }];
  for (const p of stats.peers) {
    rows.push({ device: p.device, kind: p.kind || '?', score: p.score, self: false,
      role: p.device === hubId ? 'hub' : 'peer', seen: p.lastSeenMsAgo, queue: p.queueDepth });
  }
  rows.sort((a, b) => b.score - a.score || (a.device < b.device ? -1 : 1));
  // Rows are kept per device and only their text changes, so a tap or a
  // text selection in the table survives the 1 s refresh.
  const body = $('devices').tBodies[0];
  const seen = new Set();
  rows.forEach((r, i) => {
    seen.add(r.device);
    let tr = deviceRows.get(r.device);
    if (!tr) {
      tr = el('tr', { 'data-device': r.device },
        el('td', { class: 'mono' }, short(r.device), r.self ? el('span', { class: 'you' }, 'this device') : null),
        el('td', {}), el('td', { class: 'num score' }), el('td', {}, el('span', { class: 'badge' })),
        el('td', { class: 'num' }), el('td', { class: 'num' }));
      if (r.self) tr.className = 'self';
      deviceRows.set(r.device, tr);
    }
    const isHub = r.device === hubId;
    if (isHub) tr.dataset.hub = '1'; else delete tr.dataset.hub;
    setText(tr.cells[1], r.kind);
    setText(tr.cells[2], r.score.toFixed(1));
    const badge = tr.cells[3].firstChild;
    badge.className = `badge ${isHub ? 'badge-hub' : 'badge-role'}`;
    setText(badge, isHub ? 'HUB' : r.self ? r.role : 'follower');
    setText(tr.cells[4], r.self ? '–' : ago(r.seen));
    setText(tr.cells[5], String(r.queue));
    if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
  });
  for (const [device, tr] of deviceRows) {
    if (!seen.has(device)) { tr.remove(); deviceRows.delete(device); }
  }
  $('device-count').textContent = String(rows.length);
}

function renderMe(stats) {
  $('score').textContent = stats.score.toFixed(1);
  const b = stats.scoreBreakdown;
  // The breakdown comes in milli-points while `score` is in points (0.1.0);
  // scale it when its sum says so.
  const sum = b.base + b.uptime + b.wifi + b.power;
  const unit = Math.abs(sum - stats.score) < 1 ? 1 : 1000;
  const pt = (v) => String(Math.round((v / unit) * 10) / 10);
  $('score-parts').textContent = `base ${pt(b.base)} · uptime ${pt(b.uptime)} · Wi-Fi ${pt(b.wifi)} · power ${pt(b.power)}`;
  const s = stats.security;
  const rejected = s.badSignature + s.malformed + s.wrongVenue + s.replays;
  $('security').textContent = `${s.accepted} accepted · ${rejected} rejected · ${s.duplicates} second copies dropped`;
  const q = stats.queue;
  const persisted = q.persistent === true ? 'persistent' : q.persistent === false ? 'best effort (may be evicted)' : 'persistence unknown';
  $('storage').textContent = `IndexedDB “${q.dbName}”, ${persisted}`;
  for (const b2 of $('kind').querySelectorAll('button')) {
    b2.setAttribute('aria-pressed', String(b2.dataset.kind === stats.deviceInfo.kind));
  }
  $('charging').checked = stats.deviceInfo.charging === true;
}

function renderRoute(stats) {
  const b = stats.broker;
  $('route-broker').dataset.state = b.connected ? 'up' : 'down';
  $('route-broker-url').textContent = b.url || brokers.join(', ');
  const chip = $('route-broker-state');
  // No broker, but data channels or tabs still carry the election and replication.
  const direct = !b.connected && stats.reachable;
  chip.textContent = b.connected ? 'connected' : direct ? 'down · device mesh on' : 'down';
  chip.className = `chip ${b.connected ? 'chip-ok' : 'chip-bad'}`;
  if (!b.connected) setConn(direct ? 'direct' : 'disconnected', direct ? 'device mesh' : 'offline');
  $('route-broker-rtt').textContent = b.rttMs === null ? '–' : `${b.rttMs.toFixed(1)} ms`;
  $('route-broker-rttmin').textContent = b.rttMinMs === null ? '' : `min ${b.rttMinMs.toFixed(1)} ms`;
  const endpoint = b.endpoint === null ? '' : `broker #${b.endpoint + 1} of ${brokers.length} · `;
  $('route-broker-figures').textContent = `${endpoint}${b.connects} connects, ${b.reconnects} reconnects, ` +
    `${b.connectFailures} failed · ${kb(b.bytesIn)} in / ${kb(b.bytesOut)} out · ${b.inflight} in flight`;
}

/** One row per peer in #routes: each route's up/down, breaker and latency (getDetailedStats().routes). */
function renderPeerRoutes(stats) {
  const r = stats.routes;
  const body = $('routes').tBodies[0];
  const peers = [...r.peers].sort((a, b) => (a.device < b.device ? -1 : 1));
  const seen = new Set();
  peers.forEach((p, i) => {
    seen.add(p.device);
    let tr = routeRows.get(p.device);
    if (!tr) {
      tr = el('tr', { 'data-peer': p.device },
        el('td', { class: 'mono' }, short(p.device), el('div', { class: 'muted small kind' })),
        ...ROUTES.map(([route]) => el('td', { 'data-route': route, 'data-state': 'down' },
          el('span', { class: 'chip' }), el('div', { class: 'small fig' }))));
      routeRows.set(p.device, tr);
    }
    tr.dataset.best = p.best || '';
    tr.dataset.rtc = p.rtc;
    setText(tr.cells[0].lastChild, [peerKinds.get(p.device), p.pending ? `${p.pending} in flight` : ''].filter(Boolean).join(' · '));
    ROUTES.forEach(([route], k) => {
      const td = tr.cells[k + 1];
      const q = p.routes.find((x) => x.route === route);
      const up = !!(q && q.up);
      const local = localRoute(r, route); // null, or why this browser cannot take the route at all
      td.dataset.state = up ? 'up' : local ? local.state : 'down';
      td.dataset.breaker = q ? q.breaker : 'closed';
      const best = p.best === route;
      if (best) td.dataset.best = '1'; else delete td.dataset.best;
      const chip = td.firstChild;
      const breakerBad = q && q.breaker !== 'closed';
      // rtc while its channel is being set up: say so instead of a bare "down".
      const label = up ? (breakerBad ? q.breaker : 'up') : local ? local.label
        : route === 'rtc' && p.rtc !== 'idle' && p.rtc !== 'open' ? p.rtc : 'down';
      setText(chip, `${best ? '★ ' : ''}${label}`);
      chip.className = `chip ${up ? (breakerBad ? 'chip-warn' : 'chip-ok') : 'chip-na'}`;
      const figs = [];
      if (q && q.srttMs !== null) figs.push(`${q.srttMs < 10 ? q.srttMs.toFixed(1) : Math.round(q.srttMs)} ms`);
      if (q && q.deliveryRatio !== null) figs.push(`${Math.round(q.deliveryRatio * 100)}%`);
      if (breakerBad && !up) figs.push(`breaker ${q.breaker}`);
      setText(td.lastChild, figs.join(' · '));
      td.title = q ? `breaker ${q.breaker} · ${q.msgsOut} out / ${q.msgsIn} in · ${q.acked} acked · ` +
        `${q.timeouts} timeouts · ${q.probes} probes` : 'no such route';
    });
    if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
  });
  for (const [peer, tr] of routeRows) {
    if (!seen.has(peer)) { tr.remove(); routeRows.delete(peer); }
  }
  const empty = body.querySelector('tr.empty');
  if (peers.length === 0 && !empty) body.append(el('tr', { class: 'empty' }, el('td', { colSpan: 4, class: 'muted' }, 'No peers yet: open the page on another device.')));
  if (peers.length > 0 && empty) empty.remove();
  // WebKit builds without WebRTC (and web views with it switched off) have no RTCPeerConnection: say why the column is empty.
  const why = [];
  if (r.webrtc === 'unavailable') why.push('This browser has no WebRTC (no RTCPeerConnection): peers are reached through tabs and the broker.');
  if (r.webrtc === 'off') why.push('WebRTC is switched off for this device (webrtc: false).');
  if (r.tab === 'unavailable') why.push('This browser has no BroadcastChannel: no tab route.');
  setText($('routes-local'), why.join(' '));
  $('routes-local').hidden = why.length === 0;
  $('routes-local').dataset.webrtc = r.webrtc;
  const c = r.counters;
  setText($('routes-figures'), `${c.sent} sent (${c.transmissions} transmissions, ${c.resends} resends) · ` +
    `${c.delivered} delivered, ${c.duplicates} duplicates dropped · ${r.pending} awaiting ack`);
}

/** A route this browser cannot take to any peer (`getDetailedStats().routes.webrtc` / `.tab`): its cell's state and label. */
function localRoute(r, route) {
  const use = route === 'rtc' ? r.webrtc : route === 'tab' ? r.tab : 'on';
  if (use === 'unavailable') return { state: 'unavailable', label: 'n/a' };
  if (use === 'off') return { state: 'off', label: 'off' };
  return null;
}

const kb = (n) => (n < 10_240 ? `${n} B` : `${(n / 1024).toFixed(0)} KiB`);

function renderCounts(counts) {
  for (const s of STATUSES) {
    const n = counts[COUNT_KEYS[s]];
    const node = $(`q-${s}`);
    node.textContent = String(n);
    node.dataset.count = String(n);
  }
  const key = JSON.stringify(counts);
  if (key !== lastCounts) { lastCounts = key; scheduleQueueList(); }
}

function renderReplication(stats) {
  const r = stats.replication;
  for (const [id, n] of [['r-held', r.held], ['r-below', r.belowQuorum], ['r-batches', r.batchesSent], ['r-cloud', r.cloudAcked]]) {
    const node = $(id);
    setText(node, String(n));
    node.dataset.count = String(n);
  }
  // The acting hub is the uploader (PROTOCOL.md Part 4): only it drains to the cloud.
  const up = $('uploader');
  const hub = stats.hub ? stats.hub.hub : null;
  const me = stats.role === 'hub';
  up.dataset.uploader = me ? '1' : '0';
  up.className = `chip ${me ? 'chip-hub' : 'chip-na'}`;
  setText(up, me ? 'this device uploads (hub)' : hub ? `uploader: hub ${short(hub)}` : 'uploader: no hub yet');
  setText($('repl-meta'), `${r.batchesFailed} upload batches failed · replica requests ${r.requestsSent} sent, ` +
    `${r.acksReceived} acks received · ${r.replicasStored} replicas stored for peers` +
    (r.storing ? ` · ${r.storing} being written` : ''));
}

function renderLastSale() {
  if (!lastSale) return;
  const { item, id } = lastSale;
  const status = mesh.queue.status(id) || 'removed';
  const node = $('last-sale');
  node.dataset.status = status;
  setText(node, `Sold ${item.name} (${money(item.cents)}): committed as ${id.slice(-10)}, now ${status}.`);
}

function renderQueueMeta(stats) {
  const age = mesh.queue.oldestPendingAgeMs();
  const q = stats.queue;
  $('queue-meta').textContent = `${q.queued} not cloud-acked of max ${q.maxQueued}` +
    (age === null ? '' : ` · oldest pending ${ago(age)}`) + ` · ${q.transactions} IndexedDB transactions`;
}

let listTimer = 0;
function scheduleQueueList() {
  if (listTimer) return;
  listTimer = setTimeout(() => { listTimer = 0; renderQueueList().catch((e) => log(`queue list: ${e.code || ''} ${e.message}`, 'bad')); }, 50);
}

async function renderQueueList() {
  const all = [];
  for (const s of STATUSES) all.push(...await mesh.queue.list(s, 50));
  all.sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1));
  const items = all.slice(0, 8).map((c) => {
    let what = c.topic;
    let from = null; // a replica: a sale of another device, held here too
    try {
      const sale = JSON.parse(dec.decode(c.payload));
      if (sale && sale.item) what = `${sale.item} ${money(sale.cents)}`;
      if (sale && sale.device && sale.device !== mesh.deviceId) from = sale.device;
    } catch { /* not a sale */ }
    return el('li', { 'data-id': c.id, 'data-status': c.status, 'data-replica': from ? '1' : null },
      el('span', { class: 'what' }, what),
      el('span', { class: 'mono small muted' }, `${time(c.createdAt)} · ${c.id.slice(-10)}${from ? ` · replica of ${short(from)}` : ''}`),
      el('span', { class: `chip chip-${c.status}` }, c.status));
  });
  if (items.length === 0) items.push(el('li', { class: 'empty muted' }, 'No commands yet: sell something.'));
  $('queue-list').replaceChildren(...items);
}

function refresh() {
  if (!mesh) return;
  const stats = mesh.getDetailedStats();
  renderRole(stats);
  renderDevices(stats);
  renderMe(stats);
  renderRoute(stats);
  renderPeerRoutes(stats);
  renderPresence(stats);
  renderCounts(mesh.queue.countByStatus());
  renderReplication(stats);
  renderLastSale();
  renderQueueMeta(stats);
  renderTrust(mesh, stats);
}

// --- actions ------------------------------------------------------------------
function setupPos() {
  const box = $('items');
  for (const item of ITEMS) {
    const btn = el('button', { type: 'button', class: 'item', 'data-item': item.name },
      el('span', { class: 'name' }, item.name), el('span', { class: 'price' }, money(item.cents)));
    btn.addEventListener('click', () => sell(item, btn));
    box.append(btn);
  }
}

async function sell(item, btn) {
  if (!mesh) return;
  btn.classList.add('busy');
  try {
    const sale = { item: item.name, cents: item.cents, device: mesh.deviceId, at: Date.now() };
    const id = await mesh.enqueue('pos/transaction', JSON.stringify(sale));
    lastSale = { item, id };
    renderLastSale();
    log(`sale ${item.name} queued as ${id}`);
  } catch (err) {
    $('last-sale').textContent = `Could not queue the sale: ${err.code || ''} ${err.message}`;
    log(`enqueue failed: ${err.code || ''} ${err.message}`, 'bad');
  } finally {
    btn.classList.remove('busy');
    refresh();
  }
}

function pickKind(kind) {
  mesh.setDeviceInfo({ kind });
  localStorage.setItem(`${SETTINGS}kind`, kind);
  log(`device kind set to ${kind}`);
  refresh();
}

function setCharging(on) {
  mesh.setDeviceInfo({ charging: on });
  localStorage.setItem(`${SETTINGS}charging`, on ? '1' : '0');
  log(on ? 'on power' : 'on battery');
  refresh();
}

/** Same page, fresh IndexedDB name: a new device identity in this browser. */
function newDeviceUrl() {
  const q = new URLSearchParams(location.search);
  const r = new Uint8Array(4);
  crypto.getRandomValues(r);
  q.set('db', `vm-demo-${Array.from(r, (b) => b.toString(16).padStart(2, '0')).join('')}`);
  q.delete('kind');
  return `${location.pathname}?${q}${location.hash}`; // the fragment keeps the broker account
}

// Tabs of one profile with the same `db` are one device (same id in
// IndexedDB): they do not see each other as peers. Tell the user.
function watchSameDevice() {
  if (typeof BroadcastChannel === 'undefined') return;
  const ch = new BroadcastChannel(`vm-demo:${dbName}`);
  let told = false;
  ch.onmessage = (e) => {
    if (e.data === 'hello') ch.postMessage('here');
    if (!told && (e.data === 'hello' || e.data === 'here')) {
      told = true;
      banner('Another tab of this browser is the same device (same IndexedDB): tabs of one device do not see each other as peers.',
        { label: 'Make this tab a new device', run: () => location.assign(newDeviceUrl()) });
    }
  };
  ch.postMessage('hello');
}

// --- chat: a room of the mesh ------------------------------------------------------
function chatLine(from, text, { mine = false, late = false, id = null } = {}) {
  const list = $('chat-log');
  const who = mine ? 'me' : `${short(from)}${peerKinds.get(from) ? ` (${peerKinds.get(from)})` : ''}`;
  list.append(el('li', { class: mine ? 'mine' : '', 'data-from': from, 'data-id': id, 'data-late': late ? '1' : null },
    el('span', { class: 'from' }, `${who}${late ? ' · late' : ''}`),
    el('span', { class: 'text' }, text.slice(0, 200))));
  while (list.children.length > 100) list.firstChild.remove();
  list.scrollTop = list.scrollHeight;
}

/** Who is here: this device and the peers the mesh knows (the room has no member list of its own). */
function renderPresence(stats) {
  for (const p of stats.peers) peerKinds.set(p.device, p.kind || '?');
  const names = [`me (${stats.deviceInfo.kind})`, ...stats.peers.map((p) => `${short(p.device)} (${p.kind || '?'})`)];
  const node = $('chat-presence');
  node.dataset.count = String(names.length);
  setText(node, `Here: ${names.join(', ')}`);
}

function startChat() {
  const input = $('chat-input');
  const send = $('chat-send');
  $('chat-room').textContent = room;
  mesh.on('message', (m) => {
    if (m.room !== room || m.from === mesh.deviceId) return;
    chatLine(m.from, m.text === null ? '(not text)' : m.text, { late: m.late, id: m.id });
  });
  try {
    mesh.joinRoom(room);
  } catch (err) {
    $('chat-log').append(el('li', { class: 'muted' }, `chat unavailable: ${err.code || ''} ${err.message}`));
    return;
  }
  chatReady = true;
  input.disabled = false; send.disabled = false;
  $('chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || !chatReady) return;
    try {
      const id = mesh.send(room, text);
      chatLine(mesh.deviceId, text, { mine: true, id });
      input.value = '';
    } catch (err) {
      log(`chat: ${err.code || ''} ${err.message}`, 'bad');
    }
  });
}

// --- start ---------------------------------------------------------------------
async function main() {
  $('venue').textContent = venue;
  $('broker').textContent = brokers.join(', ');
  setupPos();
  await init();
  $('version').textContent = version();

  const kindParam = params.get('kind');
  const kind = kindParam || localStorage.getItem(`${SETTINGS}kind`) || 'other';
  const options = {
    venue, brokers, dbName, ...brokerAuth,
    deviceInfo: { kind: KINDS.includes(kind) ? kind : 'other' },
  };
  // Only what the user said here; otherwise the library asks the browser
  // where it can (Chromium's Battery API; Safari has none).
  const charging = localStorage.getItem(`${SETTINGS}charging`);
  if (charging !== null) options.deviceInfo.charging = charging === '1';
  if (params.get('hb')) options.heartbeatIntervalMs = Number(params.get('hb'));
  options.replicationFactor = FACTOR;
  options.drainIntervalMs = drainMs;
  $('drain-s').textContent = String(Math.round(drainMs / 100) / 10);
  mesh = await openPaired(VenueMesh, options, params, log);
  window.mesh = mesh; // for tests and for poking at it from the console
  setupTrust(mesh, { newDeviceUrl: (code) => { const u = new URL(newDeviceUrl(), location.href); u.searchParams.delete('admin'); u.searchParams.set('code', code); return `${u.pathname}${u.search}`; }, log });
  $('device-id').textContent = mesh.deviceId;
  log(`opened as ${mesh.deviceId} (${options.deviceInfo.kind})`);

  const on = (name, text) => mesh.on(name, (e) => { log(text(e), name); refresh(); });
  mesh.on('connected', (e) => { setConn('connected', 'connected'); $('broker').textContent = e.url; log(`connected to ${e.url}`, 'ok'); refresh(); });
  mesh.on('disconnected', (e) => { setConn('disconnected', 'offline'); log(`disconnected: ${e.reason}`, 'bad'); refresh(); });
  if (mesh.connected) { setConn('connected', 'connected'); $('broker').textContent = mesh.getDetailedStats().broker.url || ''; }
  on('becomeHub', (e) => `this device became hub (term ${e.term.number})`);
  on('loseHub', (e) => `this device stopped being hub (new hub ${short(e.newHub)})`);
  on('hubChanged', (e) => (e.hub ? `hub is now ${short(e.hub)} (term ${e.term ? e.term.number : '?'})` : 'no hub'));
  on('peerJoined', (e) => `peer ${short(e.device)} joined (score ${e.score.toFixed(1)})`);
  on('peerLeft', (e) => `peer ${short(e.device)} left (${e.reason})`);
  on('scoreChanged', (e) => `score now ${e.score.toFixed(1)}`);
  on('peerAck', (e) => `peer_ack: ${idList(e.ids)} held by a majority (quorum of ${QUORUM} of ${FACTOR})`);
  on('cloudAck', (e) => `cloud_ack: ${idList(e.ids)} stored by the cloud`);
  mesh.queue.on('statusChanged', (e) => { log(`${e.id.slice(-10)}: ${e.from} → ${e.to}`, 'queue'); scheduleQueueList(); renderLastSale(); });
  mesh.queue.on('storageError', (e) => log(`storage: ${e.code} ${e.message}`, 'bad'));

  for (const b of $('kind').querySelectorAll('button')) b.addEventListener('click', () => pickKind(b.dataset.kind));
  $('charging').addEventListener('change', (e) => setCharging(e.target.checked));
  $('new-device').addEventListener('click', () => window.open(newDeviceUrl(), '_blank'));
  // The library leaves the mesh on `pagehide`; a page restored from the
  // back/forward cache (Safari keeps many) starts again.
  window.addEventListener('pageshow', (e) => { if (e.persisted) location.reload(); });
  startChat();
  setupState(mesh, log);
  setInterval(() => { if (!document.hidden) refresh(); }, 1000);
  watchSameDevice();
  refresh();
  scheduleQueueList();
}

// iOS Safari only shows :active styles when a touch listener exists.
document.addEventListener('touchstart', () => {}, { passive: true });

main().catch((err) => {
  setConn('error', 'error');
  banner(`Could not start: ${err.code || ''} ${err.message}`);
  log(`error: ${err.code || ''} ${err.message}`, 'bad');
  console.error(err);
});
