// The shipped broker configs under attack (issue #16's broker items): a private
// Mosquitto started from config/mosquitto-test.conf as shipped (no anonymous
// clients, config/mosquitto.acl, message_size_limit), real mesh pages logged in
// with their venue's account, the reference ingest logged in through
// --password-file, and attackers as Node MQTT clients (MQTT.js).
//   1. another venue's account can neither read nor clear this venue's topics;
//   2. 2 MB publishes on every venue topic, from the venue's own account: no
//      stall, sales still reach cloud_ack, the ingest keeps acknowledging;
//   3. without a size limit (an open broker), a 2 MB retained message on `up`
//      no longer makes the ingest reconnect in a loop: it skips it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { launch, startBroker, startLockedBroker, startIngest, meshMember, sleep, waitFor } from './lib.mjs';

const RUN = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
const pass = () => randomBytes(18).toString('base64url');
const BIG = 2_000_000;

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** An MQTT.js client on `url` (no reconnects); resolves once connected, rejects when refused. */
const client = (url, opts = {}) => mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5_000, ...opts });

/** Every message `c` receives, as { topic, bytes, retain }. */
function record(c) {
  const got = [];
  c.on('message', (topic, payload, packet) => got.push({ topic, bytes: payload.length, retain: packet.retain }));
  return got;
}

const hubOf = (m) => m.page.evaluate(() => window.mesh.hub);
const eventsOf = (m, ev) => m.page.evaluate((ev) => window.events.filter((e) => e.ev === ev), ev);
const agreeOn = (members, hub) => waitFor(async () => (await Promise.all(members.map(hubOf))).every((h) => h === hub),
  10_000, `every page takes ${hub} as hub`);

/** `n` sales enqueued (each committed) on page `m`; their ids. */
const enqueue = (m, n, tag) => m.page.evaluate(async ([n, tag]) => {
  const ids = [];
  for (let i = 0; i < n; i++) ids.push(await window.mesh.enqueue('sale', JSON.stringify({ tag, i })));
  return ids;
}, [n, tag]);
const counts = (m) => m.page.evaluate(() => window.mesh.queue.countByStatus());

test('another venue\'s account cannot read or clear this venue\'s topics; anonymous clients are refused',
  { timeout: 90_000 }, async (t) => {
    const A = `e2e-acl-a-${RUN}`, B = `e2e-acl-b-${RUN}`;
    const accounts = { [A]: pass(), [B]: pass() };
    const broker = await startLockedBroker({ accounts });
    t.after(() => broker.stop());
    assert.match(broker.conf, /^allow_anonymous false$/m, 'the shipped config refuses anonymous clients');

    await assert.rejects(client(broker.url), /Not authorized|Bad username or password/, 'an anonymous client is refused');
    await assert.rejects(client(broker.url, { username: A, password: 'not-the-password' }), /Not authorized|Bad username or password/,
      'a wrong password is refused');
    await assert.rejects(client(broker.url, { username: 'nobody', password: accounts[A] }), /Not authorized|Bad username or password/,
      'an unknown account is refused');

    const auth = { username: A, password: accounts[A] };
    const kiosk = await meshMember(browser, broker.url, A, 'kiosk', {}, { auth });
    const phone = await meshMember(browser, broker.url, A, 'phone', {}, { auth });
    t.after(() => Promise.all([kiosk, phone].map((m) => m.context.close().catch(() => {}))));
    await agreeOn([kiosk, phone], kiosk.id);

    // Venue A's own account reads its traffic (the pages' heartbeats): the broker is not silent.
    const own = await client(broker.url, auth);
    t.after(() => own.endAsync(true));
    const ownGot = record(own);
    await own.subscribeAsync(`vm/${A}/#`, { qos: 1 });
    // Venue B's account tries to read everything of A's, and everything at all.
    const intruder = await client(broker.url, { username: B, password: accounts[B] });
    t.after(() => intruder.endAsync(true));
    const stolen = record(intruder);
    await intruder.subscribeAsync([`vm/${A}/#`, '#', `vm/${A}/hub`, `vm/${A}/presence/+`], { qos: 1 });
    await sleep(2_000);
    assert.ok(ownGot.some((m) => m.topic.startsWith(`vm/${A}/hb/`)), `venue A's account reads A's heartbeats (${ownGot.length} messages)`);
    assert.ok(ownGot.some((m) => m.topic === `vm/${A}/hub` && m.retain && m.bytes > 0), 'and the retained hub claim');
    assert.deepEqual(stolen, [], 'venue B\'s account reads nothing of venue A\'s');

    // B tries to clear A's retained hub claim and the hub's presence, 8 times, and to inject.
    const before = (await eventsOf(phone, 'hubChanged')).length;
    for (let i = 0; i < 8; i++) {
      await intruder.publishAsync(`vm/${A}/hub`, Buffer.alloc(0), { qos: 1, retain: true });
      await intruder.publishAsync(`vm/${A}/presence/${kiosk.id}`, Buffer.alloc(0), { qos: 1, retain: true });
      await intruder.publishAsync(`vm/${A}/hb/${kiosk.id}`, randomBytes(100), { qos: 1 });
    }
    // A fresh subscriber of A's right after: both retained messages are still there.
    const late = await client(broker.url, auth);
    t.after(() => late.endAsync(true));
    const lateGot = record(late);
    await late.subscribeAsync([`vm/${A}/hub`, `vm/${A}/presence/${kiosk.id}`], { qos: 1 });
    await waitFor(() => lateGot.filter((m) => m.retain && m.bytes > 0).length >= 2, 5_000,
      `the retained hub claim and presence survive venue B's clears: ${JSON.stringify(lateGot)}`);
    await sleep(1_500);
    assert.equal(await hubOf(phone), kiosk.id, 'the hub is unchanged');
    assert.equal((await eventsOf(phone, 'hubChanged')).length, before, 'no hub change');
    assert.deepEqual((await eventsOf(phone, 'peerLeft')).map((e) => e.device), [], 'nobody left');
    const sec = await phone.page.evaluate(() => window.mesh.getDetailedStats().security);
    assert.ok(!sec.badSignature, `B's injected heartbeats never reached the pages: ${JSON.stringify(sec)}`);
    assert.deepEqual(stolen, [], 'venue B\'s account still read nothing');
    for (const m of [kiosk, phone]) assert.deepEqual(m.errors, []);
  });

test('2 MB publishes on every venue topic with the shipped config: no stall, sales acknowledged, the ingest keeps acknowledging',
  { timeout: 120_000 }, async (t) => {
    const V = `e2e-big-${RUN}`;
    const accounts = { [V]: pass() };
    const auth = { username: V, password: accounts[V] };
    const broker = await startLockedBroker({ accounts });
    t.after(() => broker.stop());
    assert.match(broker.conf, /^message_size_limit \d+$/m, 'the shipped config limits message size');
    const ingest = await startIngest({ venue: V, tcp: broker.tcp, auth });
    t.after(() => ingest.stop());
    const opts = { drain: '500' };
    const kiosk = await meshMember(browser, broker.url, V, 'kiosk', opts, { auth });
    const pos = await meshMember(browser, broker.url, V, 'pos', opts, { auth });
    const phone = await meshMember(browser, broker.url, V, 'phone', opts, { auth });
    const all = [kiosk, pos, phone];
    t.after(() => Promise.all(all.map((m) => m.context.close().catch(() => {}))));
    await agreeOn(all, kiosk.id);
    const warm = await enqueue(pos, 5, 'warm');
    await waitFor(async () => (await counts(pos)).cloudAck === 5, 20_000, 'the first 5 sales are cloud_ack before the attack');
    const hubEventsBefore = await Promise.all(all.map((m) => eventsOf(m, 'hubChanged').then((e) => e.length)));

    // The venue's own account (a leaked device token: the ACL lets it) floods every topic of the venue.
    const attacker = await client(broker.url, auth);
    t.after(() => attacker.endAsync(true));
    const ids = all.map((m) => m.id);
    const topics = [
      ['hub', true], ['up', true], ['cloud', false], ['topic/lobby', false], ['presence/fake-device', true],
      ...ids.flatMap((d) => [[`presence/${d}`, true], [`hb/${d}`, false], [`dev/${d}/rep`, false], [`dev/${d}/ack`, false],
        [`dev/${d}/msg`, false], [`dev/${d}/rtc`, false]]),
    ];
    const t0 = Date.now();
    const flood = Promise.all(topics.map(([topic, retain]) =>
      attacker.publishAsync(`vm/${V}/${topic}`, randomBytes(BIG), { qos: 1, retain })));
    // Sales made while the flood is on the wire.
    const sales = await enqueue(pos, 20, 'during');
    await flood;
    console.log(`# ${topics.length} × 2 MB published in ${Date.now() - t0} ms`);
    await waitFor(async () => (await counts(pos)).cloudAck === 25, 20_000, 'the 20 sales made during the flood are cloud_ack',
    );
    const rows = ingest.query();
    assert.deepEqual(new Set(rows.ids), new Set([...warm, ...sales]), 'the ingest stored each sale');
    assert.equal(rows.count, 25, 'exactly once');
    assert.equal(ingest.subscriptions(), 1, `the ingest never lost its connection:\n${ingest.stderr}`);
    // No stall: every page stayed connected and kept its hub; nobody made itself hub.
    for (const [i, m] of all.entries()) {
      assert.equal(await m.page.evaluate(() => window.mesh.connected), true, `${m.kind} is connected`);
      assert.equal(await hubOf(m), kiosk.id, `${m.kind} keeps the kiosk as hub`);
      assert.equal((await eventsOf(m, 'hubChanged')).length, hubEventsBefore[i], `${m.kind}: no hub change`);
      assert.deepEqual(await eventsOf(m, 'disconnected'), [], `${m.kind} never disconnected`);
    }
    assert.equal((await eventsOf(kiosk, 'becomeHub')).length, 1, 'one hub, once');
    // The broker dropped every oversized message: a fresh subscriber gets the real retained claim.
    const late = await client(broker.url, auth);
    t.after(() => late.endAsync(true));
    const lateGot = record(late);
    await late.subscribeAsync(`vm/${V}/#`, { qos: 1 });
    await sleep(1_000);
    assert.ok(lateGot.length > 0, 'the venue\'s traffic flows');
    assert.deepEqual(lateGot.filter((m) => m.bytes > 263_168), [], 'no message over the limit reached a subscriber');
    for (const m of all) assert.deepEqual(m.errors, []);
  });

test('without a size limit, a 2 MB retained message on `up` is skipped by the ingest, which keeps acknowledging',
  { timeout: 90_000 }, async (t) => {
    const V = `e2e-ingest-big-${RUN}`;
    const broker = await startBroker(); // open and unlimited: the ingest must defend itself
    t.after(() => broker.stop());
    const attacker = await client(broker.url);
    t.after(() => attacker.endAsync(true));
    await attacker.publishAsync(`vm/${V}/up`, randomBytes(BIG), { qos: 1, retain: true });
    const ingest = await startIngest({ venue: V, tcp: broker.tcp });
    t.after(() => ingest.stop());
    await waitFor(() => /skipped a oversized PUBLISH on vm\/\S+\/up \(2000\d+ bytes\)/.test(ingest.stderr), 10_000,
      'the ingest skipped the retained 2 MB message', { detail: () => ingest.stderr });
    const kiosk = await meshMember(browser, broker.url, V, 'kiosk', { drain: '500' });
    const pos = await meshMember(browser, broker.url, V, 'pos', { drain: '500' });
    t.after(() => Promise.all([kiosk, pos].map((m) => m.context.close().catch(() => {}))));
    await agreeOn([kiosk, pos], kiosk.id);
    const first = await enqueue(pos, 10, 'a');
    // Live oversized messages too, between the sales.
    await attacker.publishAsync(`vm/${V}/up`, randomBytes(BIG), { qos: 1 });
    const second = await enqueue(pos, 10, 'b');
    await waitFor(async () => (await counts(pos)).cloudAck === 20, 20_000, 'all 20 sales are cloud_ack',
      { detail: () => ingest.stderr });
    assert.equal(ingest.query().count, 20);
    assert.deepEqual(new Set(ingest.query().ids), new Set([...first, ...second]));
    assert.equal(ingest.subscriptions(), 1, `the ingest kept its one connection:\n${ingest.stderr}`);
    assert.equal(ingest.stderr.match(/skipped a oversized/g).length, 2, 'both oversized messages were skipped and logged');
    for (const m of [kiosk, pos]) assert.deepEqual(m.errors, []);
  });
