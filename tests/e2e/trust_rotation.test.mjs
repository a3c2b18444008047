// Content key rotation end to end (issue #15, PROTOCOL.md Part 6 §6): in a live venue of 3 pages
// (an admin, two POS) an admin revokes a device that holds the venue's content key (a stolen iPad:
// tests/e2e/rogue.mjs), then rotates with `mesh.rotateContentKey()`. Sales keep flowing through
// the rotation and none is lost, every page moves to the new key id, and the revoked device,
// still subscribed to the whole venue, cannot open any body sealed under the new key; a revoked
// browser page gets the update but no key and counts it (keyUpdateNotForUs, unknownKey).
// Pages run without WebRTC so every replication message crosses the broker, where the rogue
// listens (with data channels the sales would not pass it at all).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createDecipheriv } from 'node:crypto';
import { launch, startBroker, startIngest, meshMember, venueCa, waitFor, meshStats, enqueueSales, commandStatuses } from './lib.mjs';
import { rogueDevice } from './rogue.mjs';
import * as T from '../ca/trust.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const stats = meshStats;
const peersOf = async (m) => (await stats(m)).peers.map((p) => p.device);
const enqueue = (m, n, tag) => enqueueSales(m, n, tag, { cents: 240 });
const statuses = commandStatuses;

/** Opens an encrypted v2 body with `contentKey` (what a holder of that key can read), or null. */
function tryOpen(bytes, contentKey) {
  let e;
  try { e = T.parseEnvelope(bytes); } catch { return null; }
  if (!(e.flags & T.FLAG.ENCRYPTED) || e.body.length < 16) return null;
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(BigInt(e.counter));
  const d = createDecipheriv('chacha20-poly1305', T.bodyKey(contentKey, e.sender), nonce, { authTagLength: 16 });
  d.setAAD(e.header, { plaintextLength: e.body.length - 16 });
  d.setAuthTag(e.body.subarray(e.body.length - 16));
  try { return Buffer.concat([d.update(e.body.subarray(0, e.body.length - 16)), d.final()]); } catch { return null; }
}

test('rotateContentKey: sales keep flowing, every page moves to the new key id, a device revoked before cannot read after', { timeout: 120_000 }, async (t) => {
  const name = `rot-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const broker = await startBroker();
  t.after(() => broker.stop());
  // The cloud (tests/ingest): a recipient of the new key, it must keep opening the hub's uploads.
  const ingest = await startIngest({ venue: name, tcp: broker.tcp });
  t.after(() => ingest.stop());
  const pages = [];
  for (const [kind, role] of [['kiosk', 'admin'], ['pos', 'device'], ['pos', 'device']]) {
    const m = await meshMember(browser, broker.url, name, kind, { drain: '300', webrtc: '0', role });
    t.after(() => m.context.close().catch(() => {}));
    pages.push(m);
  }
  const [admin] = pages;
  await waitFor(async () => (await Promise.all(pages.map(peersOf))).every((p) => p.length === pages.length - 1), 15_000, 'every page sees the others');

  // A device with a valid certificate and the content key of epoch 1, listening to everything.
  const ca = venueCa(name);
  const rogue = await rogueDevice({ brokerUrl: broker.url, venue: name, ca, id: 'rogue-ipad' });
  t.after(() => rogue.close());
  await rogue.subscribe('#');
  const beat = setInterval(() => rogue.heartbeat().catch(() => {}), 300);
  t.after(() => clearInterval(beat));
  await rogue.join();
  await waitFor(async () => (await peersOf(admin)).includes('rogue-ipad'), 10_000, 'the admin knows the rogue (its cert is valid)');
  const oldKey = ca.keys[0].key;
  // And a browser device that will be revoked too: it shows what a revoked page counts.
  const stolen = await meshMember(browser, broker.url, name, 'ipad', { drain: '300', webrtc: '0' });
  t.after(() => stolen.context.close().catch(() => {}));
  await waitFor(async () => (await peersOf(admin)).includes(stolen.id), 10_000, 'the admin knows the second device');

  // Only an admin rotates.
  const rotate = (m, o) => m.page.evaluate(async (o) => { try { await window.mesh.rotateContentKey(o); return 'rotated'; } catch (e) { return e.code; } }, o);
  assert.equal(await rotate(pages[1]), 'NOT_ADMIN');
  // Misuse rejects the returned promise; it never throws where the call is made.
  const settles = (m, call) => m.page.evaluate((call) => {
    let p;
    try { p = call === 'revoke' ? window.mesh.revoke('nobody') : window.mesh.rotateContentKey({ graceMs: -1 }); } catch (e) { return `threw ${e.code}`; }
    return p instanceof Promise ? p.then(() => 'resolved', (e) => `rejected ${e.code}`) : 'not a promise';
  }, call);
  assert.equal(await settles(pages[1], 'revoke'), 'rejected NOT_ADMIN');
  assert.equal(await settles(admin, 'revoke'), 'rejected INVALID_ARGUMENT', 'an unknown device');
  assert.equal(await settles(admin, 'rotate'), 'rejected INVALID_OPTIONS');
  const badOpt = await rotate(admin, { activateInMs: -1 });
  assert.equal(badOpt, 'INVALID_OPTIONS', 'a bad option is refused before anything changes');
  assert.equal((await stats(admin)).security.keyEpoch, 1);

  // Revoke, then rotate while sales flow.
  await admin.page.evaluate((ids) => Promise.all(ids.map((id) => window.mesh.revoke(id))), ['rogue-ipad', stolen.id]);
  await waitFor(async () => (await Promise.all(pages.map(peersOf))).every((p) => !p.includes('rogue-ipad') && !p.includes(stolen.id)), 10_000,
    'no page lists the revoked devices');
  const before = [...await enqueue(pages[1], 4, 'before'), ...await enqueue(pages[2], 4, 'before')];
  const rotation = await admin.page.evaluate(() => window.mesh.rotateContentKey({ activateInMs: 2_000, graceMs: 3_000 }));
  const rotatedAt = Date.now();
  assert.equal(rotation.epoch, 2);
  assert.ok(!rotation.recipients.includes('rogue-ipad') && !rotation.recipients.includes(stolen.id), 'a revoked device is never a recipient');
  for (const want of ['cloud', ...pages.map((m) => m.id)]) assert.ok(rotation.recipients.includes(want), `${want} is a recipient: ${rotation.recipients}`);
  assert.ok(rotation.activateAt >= rotatedAt - 1_000 && rotation.retireAt === rotation.activateAt + 3_000);
  const during = [...await enqueue(pages[1], 4, 'during'), ...await enqueue(pages[2], 4, 'during')];
  // Every page reads the new epoch at once and sends under it from the activation on.
  await waitFor(async () => (await Promise.all(pages.map(stats))).every((s) => s.security.keyEpochs.includes(2) && s.security.keyUpdates === 1),
    10_000, 'every page took the key update');
  await waitFor(async () => (await Promise.all(pages.map(stats))).every((s) => s.security.keyEpoch === 2), 15_000, 'every page sends under epoch 2');
  const markAfter = rogue.received.length;
  const after = [...await enqueue(pages[1], 4, 'after'), ...await enqueue(pages[2], 4, 'after'), ...await enqueue(admin, 2, 'after')];
  // The old epoch is dropped at its retirement.
  await waitFor(async () => (await Promise.all(pages.map(stats))).every((s) => JSON.stringify(s.security.keyEpochs) === '[2]'), 15_000,
    'every page dropped epoch 1');

  // Nothing lost: every sale of every phase, on its origin, is durable on a majority.
  const mine = new Map([[pages[1], [...before.slice(0, 4), ...during.slice(0, 4), ...after.slice(0, 4)]],
    [pages[2], [...before.slice(4), ...during.slice(4), ...after.slice(4, 8)]], [admin, after.slice(8)]]);
  const durable = (s) => s === 'peer_ack' || s === 'cloud_ack';
  await waitFor(async () => {
    for (const [m, ids] of mine) if (!(await statuses(m, ids)).every(durable)) return false;
    return true;
  }, 30_000, 'every sale is peer_ack');
  // ... and in the cloud: uploads sealed under epoch 2 open there, its acks follow the new epoch.
  const all = [...before, ...during, ...after];
  await waitFor(async () => {
    for (const [m, ids] of mine) if (!(await statuses(m, ids)).every((s) => s === 'cloud_ack')) return false;
    return true;
  }, 60_000, 'every sale is cloud_ack');
  const stored = ingest.query().ids;
  assert.deepEqual(all.filter((id) => !stored.includes(id)), [], 'the cloud holds every sale');
  assert.match(ingest.stderr, /KEY_UPDATE: content key epoch 2/);
  // The revoked page got the update but no key: it stays on epoch 1, counts the update as not
  // for it, and the venue's envelopes under epoch 2 as unreadable.
  await waitFor(async () => {
    const s = (await stats(stolen)).security;
    return s.keyUpdateNotForUs >= 1 && s.unknownKey >= 1;
  }, 10_000, 'the revoked page counts the update not for it and the bodies it cannot open');
  const ss = (await stats(stolen)).security;
  assert.deepEqual([ss.keyEpoch, ss.keyEpochs, ss.keyUpdates], [1, [1], 0], 'the revoked page holds only the old key');
  // The revoked rogue, still on the broker: it saw the venue's traffic after the activation but
  // opens none of it with the key it holds; what it opened before the rotation it still could.
  const seenAfter = rogue.received.slice(markAfter).filter((r) => r.payload[0] === 2);
  const sealedNew = seenAfter.filter((r) => { try { const e = T.parseEnvelope(r.payload); return (e.flags & T.FLAG.ENCRYPTED) && e.epoch === 2; } catch { return false; } });
  assert.ok(sealedNew.length >= 10, `the rogue saw envelopes under epoch 2 (${sealedNew.length})`);
  const opened = sealedNew.map((r) => tryOpen(r.payload, oldKey)).filter((b) => b !== null);
  assert.equal(opened.length, 0, 'no body under the new key opens with the revoked device\'s key');
  const readBefore = rogue.received.slice(0, markAfter).map((r) => tryOpen(r.payload, oldKey)).filter((b) => b?.includes(Buffer.from('"before"')));
  assert.ok(readBefore.length >= 1, 'control: the same decryption reads the sales sealed under epoch 1');
  const leaks = rogue.received.slice(markAfter).map((r) => tryOpen(r.payload, oldKey)).filter((b) => b?.includes(Buffer.from('"after"')));
  assert.deepEqual(leaks, [], 'no sale made after the activation is readable by the revoked device');
  // Without a broker a rotation is refused: the cloud would never learn the key.
  await broker.stop();
  await waitFor(() => admin.page.evaluate(() => !window.mesh.connected), 15_000, 'the admin sees the broker gone');
  assert.equal(await rotate(admin), 'CONNECTION');
  assert.equal((await stats(admin)).security.keyEpoch, 2, 'and nothing changed');
  t.diagnostic(`rotation: ${rotation.recipients.length} recipients, epoch ${rotation.epoch}; rogue saw ${sealedNew.length} envelopes under epoch 2, opened 0`);
});
