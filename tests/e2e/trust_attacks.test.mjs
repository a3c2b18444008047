// The attacks of issue #15 against a live venue of Chromium pages, each by a rogue that holds
// what a stolen iPad holds: a valid device certificate of the venue, its own key, the content
// key and the broker (tests/e2e/rogue.mjs). With one venue key (v1) every one of them worked;
// with per-device keys, origin signatures and cloud receipts (v2) each is refused and counted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { launch, startBroker, startIngest, meshMember, venueCa, sleep, waitFor, meshStats, enqueueSales, commandStatuses } from './lib.mjs';
import { rogueDevice, hubClaimBody } from './rogue.mjs';
import * as T from '../ca/trust.mjs';

const HB = 300;
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** A venue of `n` pages on a private broker (with the ingest when `cloud`), and a rogue with a valid cert. */
async function venue(t, { n = 3, cloud = true, extra = {} } = {}) {
  const name = `atk-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const broker = await startBroker();
  t.after(() => broker.stop());
  const ingest = cloud ? await startIngest({ venue: name, tcp: broker.tcp }) : null;
  if (ingest) t.after(() => ingest.stop());
  const pages = [];
  for (let i = 0; i < n; i++) {
    const m = await meshMember(browser, broker.url, name, i === 0 ? 'kiosk' : 'pos', { drain: '300', ...extra });
    t.after(() => m.context.close().catch(() => {}));
    pages.push(m);
  }
  await waitFor(async () => (await Promise.all(pages.map(peersOf))).every((p) => p.length === n - 1), 15_000, 'every page sees the others');
  const rogue = await rogueDevice({ brokerUrl: broker.url, venue: name, ca: venueCa(name), id: 'rogue-ipad' });
  t.after(() => rogue.close());
  return { name, broker, ingest, pages, rogue };
}

const stats = meshStats;
const peersOf = async (m) => (await stats(m)).peers.map((p) => p.device);
const security = async (m) => (await stats(m)).security;
const sum = async (pages, field) => (await Promise.all(pages.map(security))).reduce((a, s) => a + s[field], 0);
const enqueue = (m, n, tag) => enqueueSales(m, n, tag, { cents: 240 });
const statuses = commandStatuses;

test('a rogue with a valid cert cannot make any sale cloud_ack: forged CLOUD_ACK, forged "cloud has it", rogue hub', { timeout: 90_000 }, async (t) => {
  const { pages, rogue, ingest, name } = await venue(t);
  ingest.pause(); // the cloud is down: nothing may turn cloud_ack now
  const ids = await enqueue(pages[1], 5, 'forged-ack');
  await waitFor(async () => (await statuses(pages[1], ids)).every((s) => s === 'peer_ack'), 15_000, 'the sales are peer_ack');
  // 1. forged CLOUD_ACK (a receipt the rogue signed itself) and pre-sent acks for the ids
  await rogue.forgeCloudAck(ids.map((id) => ({ id, digest: Buffer.alloc(32) })));
  // 2. forged "the cloud has it" (SyncAck state 2) to every page
  for (const p of pages) await rogue.forgeCloudHasIt(p.id, ids);
  // 3. rogue hub: claims a term far ahead with the top score and acts as hub
  await rogue.join();
  await rogue.publish('hub', rogue.seal({ kind: T.KIND.HUB_CLAIM, body: hubClaimBody(1_000_000, 99_999_999) }), 1);
  for (let i = 0; i < 5; i++) { await rogue.heartbeat(); await rogue.forgeCloudAck(ids.map((id) => ({ id, digest: Buffer.alloc(32) }))); await sleep(HB); }
  for (const p of pages) assert.deepEqual(await statuses(p, ids).then((s) => s.filter((x) => x === 'cloud_ack')), [], `${p.id}: no sale is cloud_ack while the cloud holds none`);
  // What counts is the receipt's signer (PROTOCOL.md Part 6): the rogue's own receipts are refused.
  assert.ok(await sum(pages, 'badReceipt') + await sum(pages, 'wrongRole') >= 1, 'the forged receipts were refused');
  ingest.resume(); // the real cloud: now they turn cloud_ack
  await waitFor(async () => (await statuses(pages[1], ids)).every((s) => s === 'cloud_ack'), 30_000, `the sales of ${name} turn cloud_ack once the cloud holds them`);
  assert.equal(ingest.query().ids.filter((i) => ids.includes(i)).length, 5);
});

test('a revoked device is ignored by every device within one heartbeat of the CRL', { timeout: 60_000 }, async (t) => {
  const { pages, rogue, name } = await venue(t, { cloud: false });
  const beat = setInterval(() => rogue.heartbeat().catch(() => {}), HB);
  t.after(() => clearInterval(beat));
  await rogue.join();
  await waitFor(async () => (await Promise.all(pages.map(peersOf))).every((p) => p.includes('rogue-ipad')), 10_000, 'the rogue is a peer (its cert is valid)');
  const crl = venueCa(name).revoke(rogue.key.pk);
  await rogue.client.publishAsync(`vm/${name}/crl`, crl, { qos: 1, retain: true }); // anyone may carry a CRL: it is signed by the root
  const at = Date.now();
  await waitFor(async () => (await Promise.all(pages.map(peersOf))).every((p) => !p.includes('rogue-ipad')), 10_000, 'no page lists the revoked device');
  const took = Date.now() - at;
  await sleep(2 * HB);
  assert.ok(await sum(pages, 'revoked') >= pages.length, 'its heartbeats are dropped as revoked');
  t.diagnostic(`revoked device gone from every page's peers after ${took} ms (heartbeat ${HB} ms)`);
});

test('a rogue cannot speak as another device: heartbeats in its name, a counter jump to 2^64-2', { timeout: 60_000 }, async (t) => {
  const { pages, rogue } = await venue(t, { cloud: false });
  const [a, b, c] = pages;
  // Heartbeats as A with a counter near 2^64, signed with the rogue's own valid key, with its
  // own chain attached and without: with one venue key these made every receiver drop A's
  // later messages as replays until A reloaded.
  for (let i = 0; i < 3; i++) {
    for (const chain of [true, false]) await rogue.heartbeat({ as: a.id, counterValue: (1n << 64n) - 2n - BigInt(i), chain });
  }
  await sleep(2 * HB);
  const after = await Promise.all([b, c].map(stats));
  assert.ok(after.every((s) => s.security.badChain + s.security.badSignature >= 3), `every forged heartbeat refused: ${JSON.stringify(after.map((s) => s.security))}`);
  // A keeps speaking: B and C still hear its heartbeats, and its messages still arrive.
  const since = Date.now();
  await sleep(3 * HB);
  for (const m of [b, c]) {
    const peerA = (await stats(m)).peers.find((p) => p.device === a.id);
    assert.ok(peerA && peerA.lastSeenMsAgo < Date.now() - since, `${m.id} heard A after the attack`);
  }
});

test('copy requests in another device\'s name are refused by every page and no forged sale reaches the cloud', { timeout: 90_000 }, async (t) => {
  const { pages, rogue, ingest } = await venue(t);
  const victim = pages[1];
  await rogue.join();
  // Sales in the victim's name, under ids of the victim's form, signed with the rogue's own valid
  // key (its chain in the batch's table): with one venue key (v1) these were stored as the
  // victim's sales and uploaded by the hub.
  const forged = Array.from({ length: 5 }, (_, i) => ({ id: T.newCommandId(victim.id), origin: victim.id, topic: 'sale',
    hlc: T.packHlc(Date.now()), payload: Buffer.from(JSON.stringify({ forged: i, cents: 99_900 })) }));
  for (const p of pages) await rogue.replicateTo(p.id, forged);
  // and the same commands with the victim's own chain in the table (the signature still is the rogue's)
  await rogue.subscribe(`presence/${victim.id}`); // retained, with the victim's chain attached
  await waitFor(() => rogue.received.some((m) => m.topic.endsWith(`/presence/${victim.id}`)), 5_000, 'the victim\'s presence');
  const chainOfVictim = T.parseEnvelope(rogue.received.find((m) => m.topic.endsWith(`/presence/${victim.id}`)).payload).chain.bytes;
  for (const p of pages) await rogue.replicateTo(p.id, forged, { chains: [chainOfVictim] });
  const real = await enqueue(victim, 3, 'real-after-forgery');
  await waitFor(async () => (await statuses(victim, real)).every((s) => s === 'cloud_ack'), 30_000, 'the victim\'s real sales reach the cloud');
  await sleep(2 * HB);
  const ids = forged.map((c) => c.id);
  const stored = ingest.query().ids;
  assert.deepEqual(ids.filter((i) => stored.includes(i)), [], 'no forged sale is in the cloud');
  assert.ok(real.every((i) => stored.includes(i)));
  for (const p of pages) {
    assert.deepEqual((await statuses(p, ids)).filter((s) => s !== null && s !== undefined), [], `${p.id} holds none of the forgeries`);
  }
  assert.ok(await sum(pages, 'badOriginSig') >= pages.length, 'each page refused them for their origin signature');
});

test('a broker subscriber without the device keys sees no sale payload', { timeout: 60_000 }, async (t) => {
  const { pages, broker, name } = await venue(t, { cloud: false, extra: { webrtc: '0' } }); // everything over the broker
  const spy = await mqtt.connectAsync(broker.url, { clientId: `spy-${Date.now()}` });
  t.after(() => spy.endAsync(true));
  const seen = [];
  spy.on('message', (topic, payload) => seen.push({ topic, payload: Buffer.from(payload) }));
  await spy.subscribeAsync(`vm/${name}/#`, { qos: 1 });
  const marker = `espresso-${Math.random().toString(36).slice(2)}`;
  const ids = await enqueue(pages[2], 5, marker);
  await waitFor(async () => (await statuses(pages[2], ids)).every((s) => s === 'peer_ack'), 15_000, 'the sales are peer_ack');
  await pages[0].page.evaluate(([to, m]) => window.mesh.send(to, `chat ${m} cents`), [pages[1].id, marker]);
  await sleep(1_000);
  assert.ok(seen.length > 10, `the spy saw the venue's traffic (${seen.length} messages)`);
  const leaks = seen.filter((m) => m.payload.includes(Buffer.from(marker)) || m.payload.includes(Buffer.from('cents')) || m.payload.includes(Buffer.from('"tag"')));
  assert.deepEqual(leaks.map((m) => m.topic), [], 'no payload readable on the broker');
});

test('a device without a valid certificate never joins', { timeout: 60_000 }, async (t) => {
  const { pages, broker, name } = await venue(t, { n: 2, cloud: false });
  // a page whose bundle comes from a CA of its own making (the right venue name, another root)
  const outsider = await meshMember(browser, broker.url, name, 'pos', {}, { ca: T.createCa({ venue: name }) });
  t.after(() => outsider.context.close().catch(() => {}));
  // and a Node device with a self-made certificate
  const fake = await rogueDevice({ brokerUrl: broker.url, venue: name, ca: T.createCa({ venue: name }), id: 'fake-1' });
  t.after(() => fake.close());
  for (let i = 0; i < 6; i++) { await fake.join(); await sleep(HB); }
  for (const m of pages) {
    const peers = await peersOf(m);
    assert.ok(!peers.includes(outsider.id) && !peers.includes('fake-1'), `${m.id} does not list them: ${peers}`);
  }
  assert.ok(await sum(pages, 'badChain') >= 4);
  assert.deepEqual(await peersOf(outsider), [], 'the outsider hears nobody either');
});
