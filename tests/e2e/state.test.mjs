// Shared state (issue #18, docs/state.md) end to end: real pages, real
// IndexedDB, real Mosquitto. Pages use webrtc=0 and separate browser
// contexts, so the broker is their only route: stopping it keeps them apart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { launch, startBroker, startIngest, meshMember, waitFor, sleep, PYTHON } from './lib.mjs';

const venueName = (what) => `e2e-state-${what}-${Date.now().toString(36)}`;

/** `mesh.collection(c)[method](...args)` in the page (awaited). */
const call = (m, c, method, ...args) => m.page.evaluate(([c, method, args]) => window.mesh.collection(c)[method](...args), [c, method, args]);
const get = (m, c, key) => call(m, c, 'get', key);
const conflicts = (m, c) => m.page.evaluate((c) => window.mesh.audit.conflicts({ collection: c }), c);
const peers = (m) => m.page.evaluate(() => window.mesh.getDetailedStats().peers.length);

async function pair(t, broker, what) {
  const browser = await launch();
  t.after(() => browser.close());
  const venue = venueName(what);
  const a = await meshMember(browser, broker.url, venue, 'kiosk', { webrtc: '0' });
  const b = await meshMember(browser, broker.url, venue, 'pos', { webrtc: '0' });
  await waitFor(async () => (await peers(a)) === 1 && (await peers(b)) === 1, 15_000, 'the two pages see each other');
  return { browser, venue, a, b };
}

/** What the reference ingest holds of the shared state (tests/ingest/state_ingest.py): `{writes, ids, documents}`. */
function cloudState(ingest) {
  const script = fileURLToPath(new URL('../ingest/state_ingest.py', import.meta.url));
  const r = spawnSync(PYTHON, [script, '--db', ingest.db], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`state_ingest.py failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Stops the broker; returns a function that starts it again on the same ports. */
async function apart(broker) {
  await broker.stop();
  return () => startBroker({ port: broker.port, tcp: broker.tcp });
}

test('seed 001: two pages edit one product apart; on reconnect the later edit wins on both, both audit it', { timeout: 120_000 }, async (t) => {
  let broker = await startBroker();
  t.after(() => broker.stop());
  const { a, b } = await pair(t, broker, 'seed001');
  await call(a, 'products', 'put', 'sku-1', { name: 'Tea', price: 3 });
  await waitFor(async () => (await get(b, 'products', 'sku-1'))?.price === 3, 10_000, 'b sees the first version');
  const restart = await apart(broker);
  await call(a, 'products', 'patch', 'sku-1', { price: 4 });
  await sleep(50);
  await call(b, 'products', 'patch', 'sku-1', { price: 5 }); // the later edit
  assert.equal((await get(a, 'products', 'sku-1')).price, 4, 'apart, each keeps its own');
  broker = await restart();
  await waitFor(async () => (await get(a, 'products', 'sku-1'))?.price === 5 && (await get(b, 'products', 'sku-1'))?.price === 5, 40_000,
    'both hold the later edit');
  for (const [m, local, remote] of [[a, 4, 5], [b, 5, 4]]) {
    const c = await conflicts(m, 'products');
    assert.ok(c.length >= 1, `${m.kind} audited the conflict`);
    const e = c[c.length - 1];
    assert.deepEqual([e.local?.price, e.remote.price, e.final?.price], [local, remote, 5], `${m.kind}: local, remote, final`);
    assert.equal(e.strategy, 'last_write_wins');
    assert.equal(e.resolvedBy, 'system');
  }
  assert.deepEqual([a.errors, b.errors], [[], []]);
});

test('updatedAt rules: an older explicit updatedAt loses everywhere; a later edit without one still wins', { timeout: 90_000 }, async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const { a, b } = await pair(t, broker, 'updated');
  const now = Date.now();
  // With an app timestamp (older wall clock) vs a later edit without: the one with updatedAt wins everywhere.
  await call(a, 'customers', 'put', 'c-1', { name: 'Ann' }, { updatedAt: now - 60_000 });
  await waitFor(async () => (await get(b, 'customers', 'c-1'))?.name === 'Ann', 10_000, 'b has c-1');
  // A later normal edit gets a raised updatedAt, so it is not lost to the import.
  await call(b, 'customers', 'put', 'c-1', { name: 'Bob' });
  await waitFor(async () => (await get(a, 'customers', 'c-1'))?.name === 'Bob', 10_000, 'a has the later edit');
  // Newer updatedAt wins, whoever writes it later.
  await call(a, 'customers', 'put', 'c-2', { name: 'new' }, { updatedAt: now });
  await waitFor(async () => (await get(b, 'customers', 'c-2'))?.name === 'new', 10_000, 'b has c-2');
  await call(b, 'customers', 'put', 'c-2', { name: 'stale import' }, { updatedAt: now - 1_000 });
  await sleep(1_000);
  for (const m of [a, b]) assert.equal((await get(m, 'customers', 'c-2')).name, 'new', `${m.kind}: the older import lost`);
  // A bad argument throws a typed error and changes nothing.
  const err = await a.page.evaluate(() => { try { window.mesh.collection('customers').put('c-3', [1, 2]); return null; } catch (e) { return [e.name, e.code]; } });
  assert.deepEqual(err, ['VenueMeshError', 'INVALID_ARGUMENT']);
  assert.equal(await get(a, 'customers', 'c-3'), undefined);
});

test('two lanes each sell 5 of 100 while apart: 90 everywhere', { timeout: 120_000 }, async (t) => {
  let broker = await startBroker();
  t.after(() => broker.stop());
  const { a, b } = await pair(t, broker, 'stock');
  await call(a, 'stock', 'increment', 'sku-1', 'qty', 100);
  await waitFor(async () => (await get(b, 'stock', 'sku-1'))?.qty === 100, 10_000, 'b has the stock');
  const restart = await apart(broker);
  await call(a, 'stock', 'increment', 'sku-1', 'qty', -5);
  await call(b, 'stock', 'increment', 'sku-1', 'qty', -5);
  broker = await restart();
  await waitFor(async () => (await get(a, 'stock', 'sku-1'))?.qty === 90 && (await get(b, 'stock', 'sku-1'))?.qty === 90, 40_000,
    'both at 90');

});

test('a page reloaded mid-write keeps every acknowledged write (its peer sees it leave and come back); a page joining late catches up', { timeout: 120_000 }, async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const { browser, venue, a, b } = await pair(t, broker, 'reload');
  await b.page.evaluate(() => {
    window.peerEvents = [];
    for (const ev of ['peerConnected', 'peerReconnected', 'peerDisconnected', 'heartbeatTimeout']) window.mesh.on(ev, () => window.peerEvents.push(ev));
  });
  const acked = await a.page.evaluate(async () => {
    const c = window.mesh.collection('products');
    window.acked = [];
    const done = [];
    for (let i = 0; i < 60; i++) done.push(c.put(`p-${i}`, { price: i }).then(() => window.acked.push(i)));
    await Promise.all(done.slice(0, 30));
    return window.acked.slice();
  });
  // Reload with writes still in flight.
  const more = await a.page.evaluate(() => {
    const c = window.mesh.collection('products');
    for (let i = 60; i < 80; i++) c.put(`p-${i}`, { price: i }).then(() => window.acked.push(i));
    return window.acked.slice();
  });
  await a.page.reload();
  await a.page.waitForFunction(() => window.mesh || window.openError, null, { timeout: 10_000 });
  for (const i of new Set([...acked, ...more])) {
    assert.equal((await get(a, 'products', `p-${i}`))?.price, i, `acknowledged write p-${i} survived the reload`);
  }
  // Seed 001's connection events and metrics on the other page: a left (its reload) and came back.
  await waitFor(async () => (await b.page.evaluate(() => window.peerEvents)).includes('peerReconnected'), 15_000, 'b saw a come back');
  assert.ok((await b.page.evaluate(() => window.peerEvents)).includes('peerDisconnected'));
  const peer = await b.page.evaluate(() => window.mesh.getDetailedStats().peers[0]);
  assert.ok(peer.connection.reconnectAttempts >= 1, JSON.stringify(peer.connection));
  assert.equal(typeof peer.connection.bytesSent, 'number');
  // Last ping / pong (the router's probes of its routes to that peer).
  await waitFor(async () => {
    const c = (await b.page.evaluate(() => window.mesh.getDetailedStats().peers[0])).connection;
    return typeof c.lastPingMsAgo === 'number' && typeof c.lastPongMsAgo === 'number' && c.lastPongMsAgo <= 60_000;
  }, 30_000, 'b pinged a and got its pong');
  // A device that was away (a fresh page) gets everything by reconciliation.
  const c = await meshMember(browser, broker.url, venue, 'phone', { webrtc: '0' });
  await waitFor(async () => (await call(c, 'products', 'entries', {})).length >= acked.length, 40_000, 'the late page caught up');
  const entries = await call(c, 'products', 'entries', { prefix: 'p-', limit: 1000 });
  for (const i of acked) assert.ok(entries.some(([k, v]) => k === `p-${i}` && v.price === i), `late page has p-${i}`);
});

test('state writes go upstream: the ingest holds every write made on the pages, also those made offline, each once', { timeout: 180_000 }, async (t) => {
  let broker = await startBroker();
  t.after(() => broker.stop());
  const { venue, a, b } = await pair(t, broker, 'upstream');
  const ingest = await startIngest({ venue, tcp: broker.tcp }); // reconnects by itself after the broker restart
  t.after(() => ingest.stop());
  await call(a, 'products', 'put', 'sku-1', { name: 'Tea', price: 3 });
  await call(b, 'products', 'patch', 'sku-1', { price: 4 });
  await call(a, 'stock', 'increment', 'sku-1', 'qty', 100);
  await call(b, 'stock', 'increment', 'sku-1', 'qty', -5);
  await call(a, 'products', 'put', 'sku-2', { name: 'Gone' });
  await call(a, 'products', 'delete', 'sku-2');
  const holds = async (want, what) => waitFor(async () => {
    const s = cloudState(ingest);
    return JSON.stringify(s.documents) === JSON.stringify(want) && s.writes === new Set(s.ids).size;
  }, 60_000, what, { detail: () => `${JSON.stringify(cloudState(ingest))}\n${ingest.stderr}` });
  await holds({ products: { 'sku-1': { name: 'Tea', price: 4 } }, stock: { 'sku-1': { qty: 95 } } }, 'the ingest holds the online writes');
  // Offline: the broker (the pages' only route, and the cloud's) is down; writes still resolve.
  const restart = await apart(broker);
  await call(a, 'products', 'put', 'sku-3', { name: 'Cake', price: 2 });
  await call(b, 'stock', 'increment', 'sku-1', 'qty', -1);
  await call(b, 'products', 'patch', 'sku-1', { price: 5 });
  const pending = await b.page.evaluate(() => window.mesh.queue.countByStatus());
  assert.ok(pending.pending >= 2, `b's offline writes wait in its queue: ${JSON.stringify(pending)}`);
  broker = await restart();
  const want = { products: { 'sku-1': { name: 'Tea', price: 5 }, 'sku-3': { name: 'Cake', price: 2 } }, stock: { 'sku-1': { qty: 94 } } };
  await holds(want, 'the ingest holds the offline writes too');
  // The cloud's documents are the pages' own.
  for (const m of [a, b]) {
    // b's own writes hold on b at once: wait for a's offline sku-3 too before comparing it.
    await waitFor(async () => (await get(m, 'products', 'sku-1'))?.price === 5 && (await get(m, 'stock', 'sku-1'))?.qty === 94
      && (await get(m, 'products', 'sku-3')) !== undefined, 40_000, `${m.kind} converged`);
    assert.deepEqual(await get(m, 'products', 'sku-3'), want.products['sku-3']);
  }
  // 9 writes, each one command: every one stored once, and acknowledged back to its writer.
  assert.equal(cloudState(ingest).writes, 9);
  await waitFor(async () => {
    const [ca, cb] = await Promise.all([a, b].map((m) => m.page.evaluate(() => window.mesh.queue.countByStatus())));
    return ca.pending === 0 && cb.pending === 0 && ca.cloudAck >= 5 && cb.cloudAck >= 4;
  }, 60_000, 'every state command is cloud_ack on its writer');
  assert.deepEqual([a.errors, b.errors], [[], []]);
});

test('seed 003: inventories diverge apart, checksums differ, reconciliation makes them equal, newest wins, audited', { timeout: 150_000 }, async (t) => {
  let broker = await startBroker();
  t.after(() => broker.stop());
  const { a, b } = await pair(t, broker, 'seed003');
  const checksum = (m) => call(m, 'inventory', 'checksum');
  for (const m of [a, b]) {
    await m.page.evaluate(() => {
      window.recon = [];
      window.mesh.on('reconciliationCompleted', (s) => window.recon.push(s));
    });
  }
  await a.page.evaluate(async () => {
    const inv = window.mesh.collection('inventory');
    await Promise.all(Array.from({ length: 20 }, (_, i) => inv.put(`item-${i}`, { qty: 10, site: 'bar' })));
  });
  await waitFor(async () => JSON.stringify(await checksum(a)) === JSON.stringify(await checksum(b)), 20_000, 'equal inventories');
  assert.equal((await checksum(b)).count, 20);
  const restart = await apart(broker);
  await call(a, 'inventory', 'patch', 'item-1', { qty: 7 });
  await call(a, 'inventory', 'put', 'item-2', { qty: 3, site: 'bar' });
  await sleep(50);
  await call(b, 'inventory', 'patch', 'item-1', { qty: 9 }); // the newest count of item-1
  await call(b, 'inventory', 'put', 'item-20', { qty: 1, site: 'kitchen' });
  const [ca, cb] = [await checksum(a), await checksum(b)];
  assert.notEqual(ca.sum, cb.sum, 'apart, the checksums differ');
  assert.deepEqual([ca.count, cb.count], [20, 21]);
  broker = await restart();
  await waitFor(async () => JSON.stringify(await checksum(a)) === JSON.stringify(await checksum(b)), 60_000, 'the checksums are equal again');
  for (const m of [a, b]) {
    assert.deepEqual(await get(m, 'inventory', 'item-1'), { qty: 9, site: 'bar' }, `${m.kind}: the newest count wins`);
    assert.deepEqual(await get(m, 'inventory', 'item-2'), { qty: 3, site: 'bar' });
    assert.deepEqual(await get(m, 'inventory', 'item-20'), { qty: 1, site: 'kitchen' });
    const c = (await conflicts(m, 'inventory')).filter((e) => e.key === 'item-1');
    assert.ok(c.length >= 1, `${m.kind} audited item-1`);
    assert.equal(c[c.length - 1].final.qty, 9);
  }
  const recon = [...await a.page.evaluate(() => window.recon), ...await b.page.evaluate(() => window.recon)];
  console.log(`# seed 003: reconciliation sessions after the reconnect: ${JSON.stringify(recon.filter((s) => s.collection === 'inventory'))}`);
  assert.ok(recon.some((s) => s.collection === 'inventory' && s.keysSent + s.keysReceived >= 1),
    'a reconciliation of the inventory moved the differing keys');
  assert.deepEqual([a.errors, b.errors], [[], []]);
});

test('seed 001 timestamp cases made apart: no local updatedAt → remote wins, no remote → local wins, both → newer, neither → later; the same on both', { timeout: 150_000 }, async (t) => {
  let broker = await startBroker();
  t.after(() => broker.stop());
  const { a, b } = await pair(t, broker, 'tscases');
  const restart = await apart(broker);
  const T = Date.now() - 3_600_000; // app timestamps an hour old: older than either page's clock
  // a plays "remote", b "local" (b's view is checked; a must agree).
  await call(a, 'products', 'put', 'a', { v: 'remote' }, { updatedAt: T });
  await sleep(5);
  await call(b, 'products', 'put', 'a', { v: 'local' }); // later by HLC, no timestamp: loses
  await call(a, 'products', 'put', 'b', { v: 'remote' });
  await call(b, 'products', 'put', 'b', { v: 'local' }, { updatedAt: T });
  await call(b, 'products', 'put', 'c', { v: 'local' }, { updatedAt: T + 2_000 });
  await sleep(5);
  await call(a, 'products', 'put', 'c', { v: 'remote' }, { updatedAt: T + 1_500 }); // later by HLC, older timestamp: loses
  await call(b, 'products', 'put', 'd', { v: 'local' });
  await sleep(5);
  await call(a, 'products', 'put', 'd', { v: 'remote' });
  broker = await restart();
  const want = { a: 'remote', b: 'local', c: 'local', d: 'remote' };
  await waitFor(async () => {
    for (const m of [a, b]) for (const [k, v] of Object.entries(want)) if ((await get(m, 'products', k))?.v !== v) return false;
    return true;
  }, 60_000, 'both pages hold seed 001\'s winner of each case');
  // Each case met a concurrent write: audited on b with the winner named.
  const c = await conflicts(b, 'products');
  for (const [k, v] of Object.entries(want)) {
    const e = c.filter((x) => x.key === k).at(-1);
    assert.ok(e, `b audited case ${k}`);
    assert.equal(e.final.v, v, `case ${k}: final`);
    assert.equal(e.winner, v === 'local' ? 'local' : 'remote', `case ${k}: winner`);
  }
  assert.deepEqual([a.errors, b.errors], [[], []]);
});
