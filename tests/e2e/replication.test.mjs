// Quorum replication and the upstream drain with real pages, the real broker
// and the reference ingest (tests/ingest/ingest.py): 1,000 commands from three
// pages, the hub page closed halfway with a backlog not yet in the cloud; the
// ingest ends with all 1,000 exactly once and every surviving holder marks
// them cloud_ack.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, startBroker, startIngest, sleep, meshMember, waitFor as waitUntil } from './lib.mjs';


let browser, broker, ingest;
before(async () => {
  browser = await launch();
  broker = await startBroker(); // its plain MQTT listener (broker.tcp) is the ingest's
});
after(async () => {
  await ingest?.stop();
  await browser?.close();
  await broker?.stop();
});

const ingested = () => ingest.query();

const waitFor = (f, ms, what) => waitUntil(f, ms, what, { detail: () => `ingest stderr:\n${(ingest?.stderr ?? '').slice(-2000)}` });

const member = (venue, kind, extra = {}) => meshMember(browser, broker.url, venue, kind, extra);

/** `n` commands enqueued from page `m`, each awaited (committed); their ids. */
const enqueue = (m, n, tag) => m.page.evaluate(async ([n, tag]) => {
  const ids = [];
  for (let i = 0; i < n; i++) ids.push(await window.mesh.enqueue('sale', JSON.stringify({ tag, i, total: 12.5 })));
  return ids;
}, [n, tag]);
const counts = (m) => m.page.evaluate(() => window.mesh.queue.countByStatus());

test('1,000 commands from three pages, hub closed halfway: the ingest holds each exactly once',
  { timeout: 120_000 }, async () => {
    const venue = `e2e-repl-${Date.now().toString(36)}`;
    ingest = await startIngest({ venue, tcp: broker.tcp });
    const opts = { drain: '500', batch: '50' };
    const kiosk = await member(venue, 'kiosk', opts);
    const pos = await member(venue, 'pos', opts);
    const ipad = await member(venue, 'ipad', { ...opts, charging: '1' });
    const all = [kiosk, pos, ipad];
    await waitFor(async () => (await Promise.all(all.map((m) => m.page.evaluate(() => window.mesh.hub))))
      .every((h) => h === kiosk.id), 10_000, 'the kiosk is everyone\'s hub');

    // The cloud stops answering: the hub's uploads wait unacknowledged.
    ingest.pause();
    const first = (await Promise.all(all.map((m, i) => enqueue(m, [167, 167, 166][i], `a${i}`)))).flat();
    assert.equal(first.length, 500);
    // Each page's own commands reach the quorum (a majority of 3 holds them).
    await waitFor(async () => (await Promise.all(all.map(counts))).every((c) => c.pending === 0), 20_000,
      'the first 500 are peer_ack');
    // The hub goes away with its backlog; the cloud comes back.
    await kiosk.context.close();
    ingest.resume();
    const second = (await Promise.all([enqueue(pos, 250, 'b0'), enqueue(ipad, 250, 'b1')])).flat();
    const ids = new Set([...first, ...second]);
    assert.equal(ids.size, 1000, 'enqueue gave 1,000 distinct ids');

    await waitFor(() => ingested().count >= 1000, 60_000, 'the ingest holds 1,000 commands');
    const got = ingested();
    assert.equal(got.count, 1000, 'exactly 1,000 rows');
    assert.deepEqual(new Set(got.ids), ids, 'the ingest holds exactly the enqueued ids');
    // Every surviving holder learns of the cloud acks (its own and its replicas).
    await waitFor(async () => (await Promise.all([pos, ipad].map(counts)))
      .every((c) => c.pending === 0 && c.peerAck === 0 && c.failed === 0), 30_000, 'the survivors mark everything cloud_ack');
    const stats = await pos.page.evaluate(() => window.mesh.getDetailedStats().replication);
    console.log(`# ingest: 1000 rows, ${got.duplicates_absorbed} duplicate uploads absorbed by id; pos replication ${JSON.stringify(stats)}`);
    for (const m of [pos, ipad]) assert.deepEqual(m.errors, []);
    await Promise.all([pos, ipad].map((m) => m.context.close()));
  });

test('when a replica holder leaves, its commands are replicated to the next best device', { timeout: 90_000 }, async () => {
  const venue = `e2e-rerep-${Date.now().toString(36)}`;
  const opts = { drain: '600000' }; // no cloud here: commands stay peer_ack
  const kiosk = await member(venue, 'kiosk', opts);
  const pos = await member(venue, 'pos', opts);
  const ipad = await member(venue, 'ipad', { ...opts, charging: '1' });
  const phone = await member(venue, 'phone', opts);
  const all = [kiosk, pos, ipad, phone];
  await waitFor(async () => (await Promise.all(all.map((m) => m.page.evaluate(() => window.mesh.hub)))).every((h) => h === kiosk.id),
    10_000, 'the kiosk is everyone\'s hub');
  const holds = (m, ids) => m.page.evaluate((ids) => {
    const have = new Set(['pending', 'peer_ack', 'cloud_ack'].flatMap((s) => window.mesh.queue.listIds(s)));
    return ids.every((id) => have.has(id));
  }, ids);
  const ids = await enqueue(pos, 20, 'rerep');
  // Placement: the hub, then the best score (the charging iPad), not the phone.
  await waitFor(async () => (await holds(kiosk, ids)) && (await holds(ipad, ids)), 15_000, 'the hub and the iPad hold the commands');
  assert.equal(await holds(phone, ids), false, 'the phone is not a holder yet');
  await ipad.context.close();
  await waitFor(() => holds(phone, ids), 15_000, 'the phone holds them once the iPad is gone');
  assert.equal((await counts(pos)).pending, 0, 'still peer_ack on the origin');
  for (const m of [kiosk, pos, phone]) assert.deepEqual(m.errors, []);
  await Promise.all([kiosk, pos, phone].map((m) => m.context.close()));
});

test('own commands still pending at a reload reach peer_ack once peers come', { timeout: 90_000 }, async () => {
  // Enqueued while alone (no replica can hold them), then the page reloads:
  // the outbox restores them as not yet at the quorum, so they are
  // replicated when peers appear and marked peer_ack. Restored as if already
  // at the quorum, they would stay `pending` for ever.
  const venue = `e2e-reload-pend-${Date.now().toString(36)}`;
  const opts = { drain: '600000' }; // no cloud: statuses stop at peer_ack
  const pos = await member(venue, 'pos', { ...opts, db: `reload-pend-${Date.now()}` });
  const ids = await enqueue(pos, 5, 'alone');
  await sleep(1_000);
  const alone = await counts(pos);
  assert.equal(alone.pending, 5, 'alone, nothing reaches the quorum');
  assert.equal(alone.peerAck, 0);
  await pos.page.reload();
  await pos.page.waitForFunction(() => window.mesh || window.openError, null, { timeout: 10_000 });
  assert.equal(await pos.page.evaluate(() => window.openError ?? null), null);
  const kiosk = await member(venue, 'kiosk', opts);
  const ipad = await member(venue, 'ipad', { ...opts, charging: '1' });
  await waitFor(async () => (await counts(pos)).peerAck === 5, 20_000, 'the reloaded page\'s 5 commands are peer_ack');
  const listed = await pos.page.evaluate(() => window.mesh.queue.listIds('peer_ack'));
  assert.deepEqual(new Set(listed), new Set(ids));
  for (const m of [kiosk, ipad]) assert.deepEqual(m.errors, []);
  await Promise.all([pos, kiosk, ipad].map((m) => m.context.close()));
});
