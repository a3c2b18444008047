// Liveness under partial failures (issue #17) with real pages and the real
// broker, on the library's default timers (heartbeat 5 s, MQTT keepalive 30 s):
// a broker link that stops delivering while the device keeps sending is
// noticed, and the device stops acting as a hub of a partition of one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, startBroker, startIngest, startLinkProxy, meshMember, waitFor, sleep } from './lib.mjs';


let browser, broker;
before(async () => {
  browser = await launch();
  broker = await startBroker();
});
after(async () => {
  await browser?.close();
  await broker?.stop();
});

// The library's own timers (I = 5 s, W = 1 s); the test page's default is the fast 300 ms.
const DEFAULT_TIMERS = { hb: 'default' };
const state = (m) => m.page.evaluate(() => ({ connected: window.mesh.connected, hub: window.mesh.hub, isHub: window.mesh.isHub }));
const counts = (m) => m.page.evaluate(() => window.mesh.queue.countByStatus());
const eventsSince = (m, t0, names) => m.page.evaluate(([t0, names]) =>
  window.events.filter((e) => e.at >= t0 && names.includes(e.ev)).map((e) => ({ ev: e.ev, at: e.at })), [t0, names]);

test('a blackholed broker link is noticed while the device keeps sending heartbeats', { timeout: 150_000 }, async (t) => {
  const venue = `e2e-live-bh-${Date.now().toString(36)}`;
  const proxy = await startLinkProxy(broker.port);
  t.after(() => proxy.stop());
  const kiosk = await meshMember(browser, broker.url, venue, 'kiosk', { ...DEFAULT_TIMERS, webrtc: '0' });
  const pos = await meshMember(browser, broker.url, venue, 'pos', { ...DEFAULT_TIMERS, webrtc: '0' });
  const phone = await meshMember(browser, proxy.url, venue, 'phone', { ...DEFAULT_TIMERS, webrtc: '0' });
  for (const m of [kiosk, pos, phone]) t.after(() => m.context.close().catch(() => {}));
  await waitFor(async () => (await Promise.all([kiosk, pos, phone].map(state))).every((s) => s.connected && s.hub === kiosk.id),
    20_000, 'every page connected, the kiosk hub');
  assert.equal(proxy.connections, 1, 'the phone talks to the broker through the proxy');

  const t0 = Date.now();
  proxy.blackhole();
  // The phone keeps publishing heartbeats into the void; it must notice.
  await waitFor(async () => !(await state(phone)).connected, 45_000, 'the phone reports disconnected (keepalive 30 s + 5 s)');
  const noticedAfter = Date.now() - t0;
  console.log(`# blackholed link noticed after ${noticedAfter} ms (bound: keepalive 30 s + ping timeout 5 s)`);
  // Alone, without the broker or a direct route, it does not act as hub.
  await waitFor(async () => !(await state(phone)).isHub, 5_000, 'the phone does not act as hub once disconnected');
  const hubSpells = await eventsSince(phone, t0, ['becomeHub', 'loseHub']);
  console.log(`# phone hub events during the blackhole: ${JSON.stringify(hubSpells.map((e) => `${e.ev}+${Math.round(e.at - t0)}ms`))}`);
  for (const m of [kiosk, pos]) {
    const s = await state(m);
    assert.equal(s.hub, kiosk.id, `${m.kind}: the real hub is unchanged`);
  }
  // Its sales wait pending, durable; healed, they reach peer_ack.
  const ids = await phone.page.evaluate(async () => {
    const out = [];
    for (let i = 0; i < 5; i++) out.push(await window.mesh.enqueue('sale', JSON.stringify({ i })));
    return out;
  });
  assert.equal(ids.length, 5);
  proxy.restore();
  await waitFor(async () => (await state(phone)).connected, 30_000, 'the phone reconnects once the link works');
  const t1 = Date.now();
  // Its partition term (higher than the kiosk's) fences the kiosk, but it says
  // the term ended: the kiosk claims again at once instead of everyone waiting
  // W + G = 16 s for it (17.5 s before #17's election fix).
  const oneHub = async () => {
    const s = await Promise.all([kiosk, pos, phone].map(state));
    return s.filter((x) => x.isHub).length === 1 && s.every((x) => x.hub && x.hub === s.find((y) => y.isHub).hub);
  };
  await waitFor(oneHub, 8_000, 'one hub, followed by all three, soon after healing');
  console.log(`# after healing: one hub followed by all after ${Date.now() - t1} ms (was 17.5 s)`);
  assert.equal((await state(kiosk)).isHub, true, 'the best device is the hub again');
  await waitFor(async () => (await counts(phone)).pending === 0, 30_000, 'its sales reach peer_ack after healing');
  for (const m of [kiosk, pos, phone]) console.log(`# ${m.kind}: ${JSON.stringify(await state(m))}`);
});

// A renderer crash: the broker sees the socket close (Will), but the peers'
// data channels stay "open" (no SCTP abort; ICE gives up after ≈ 30 s).
const crash = async (m) => {
  const cdp = await m.context.newCDPSession(m.page);
  cdp.send('Page.crash').catch(() => {}); // never answers: the page is gone
  await waitFor(async () => m.page.evaluate(() => 1).then(() => false, () => true), 5_000, 'the page crashed');
};
const rtcUp = async (m, others) => {
  const s = await m.page.evaluate(() => window.mesh.getDetailedStats());
  return others.every((o) => s.routes.peers.find((p) => p.device === o.id)?.routes.find((r) => r.route === 'rtc')?.up);
};
const enqueueSome = (m, tag) => m.page.evaluate(async (tag) => {
  for (let i = 0; i < 3; i++) await window.mesh.enqueue('sale', JSON.stringify({ tag, i }));
}, tag);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

test('a crashed hub is replaced within seconds with data channels up (default timers)', { timeout: 300_000 }, async (t) => {
  const venue = `e2e-live-crash-${Date.now().toString(36)}`;
  const members = [];
  for (const [kind, extra] of [['kiosk', {}], ['pos', {}], ['ipad', { charging: '1' }]]) {
    members.push(await meshMember(browser, broker.url, venue, kind, { ...DEFAULT_TIMERS, ...extra }));
  }
  t.after(() => Promise.all(members.map((m) => m.context.close().catch(() => {}))));
  const agreed = async () => {
    const s = await Promise.all(members.map(state));
    const hubs = s.filter((x) => x.isHub);
    return hubs.length === 1 && s.every((x) => x.connected && x.hub === s.find((y) => y.isHub).hub) ? s.find((y) => y.isHub).hub : null;
  };
  const channelsUp = async () => {
    await Promise.all(members.map((m, i) => enqueueSome(m, `warm${i}`))); // replication partners get channels
    await waitFor(async () => (await Promise.all(members.map((m) => rtcUp(m, members.filter((o) => o !== m))))).every(Boolean),
      30_000, 'data channels between every pair');
  };
  await waitFor(agreed, 30_000, 'a hub with the default timers');
  await channelsUp();
  const took = [];
  for (let round = 0; round < 5; round++) {
    const hubId = await agreed();
    assert.ok(hubId, `round ${round}: one hub before the crash`);
    const victim = members.find((m) => m.id === hubId);
    const others = members.filter((m) => m !== victim);
    const t0 = Date.now();
    await crash(victim);
    await waitFor(async () => {
      const s = await Promise.all(others.map(state));
      return s.some((x) => x.isHub) && s.every((x) => x.hub && x.hub !== hubId);
    }, 25_000, `round ${round}: a survivor acts as hub and both follow it`);
    const became = (await Promise.all(others.map((m) => eventsSince(m, t0, ['becomeHub'])))).flat().map((e) => e.at).sort();
    assert.equal(became.length, 1, `round ${round}: exactly one survivor became hub`);
    took.push(Math.round(became[0] - t0));
    for (const m of others) {
      const evs = await m.page.evaluate((t0) => window.events.filter((e) => e.at >= t0 - 100 && e.ev !== 'connected'), t0);
      console.log(`# round ${round} ${m.kind}: ${evs.map((e) => `${e.ev}${e.reason ? `(${e.reason})` : ''}${e.device ? `:${e.device.slice(0, 4)}` : ''}+${Math.round(e.at - t0)}`).join(' ')}`);
    }
    // The crashed page comes back (same profile: same device id, its old term restored).
    await victim.page.close().catch(() => {});
    const again = await meshMember(browser, broker.url, venue, victim.kind, { ...DEFAULT_TIMERS, ...(victim.kind === 'ipad' ? { charging: '1' } : {}) }, { context: victim.context });
    assert.equal(again.id, hubId, 'the restarted page is the same device');
    Object.assign(victim, { page: again.page, errors: again.errors });
    await waitFor(agreed, 30_000, `round ${round}: one hub again after the restart`);
    await channelsUp();
    // A restarted device claims only after its discovery (I + W = 6 s): a hub
    // crash inside it waits for it (measured ≈ 6 s). Crash a settled venue.
    await sleep(7_000);
  }
  // One acting hub per term across all rounds, on every page.
  const terms = new Map();
  for (const m of members) {
    for (const e of await m.page.evaluate(() => window.events.filter((e) => e.ev === 'becomeHub'))) {
      const key = `${e.term.number}/${e.term.hub}`;
      assert.ok(!terms.has(key) || terms.get(key) === m.id, `term ${key} acted by one device`);
      terms.set(key, m.id);
    }
  }
  console.log(`# hub crash with data channels up, default timers: new hub acted after ${JSON.stringify(took)} ms, median ${median(took)} ms (issue #17: 23.5–28 s before)`);
});

const hubEvents = async (members, t0) => (await Promise.all(members.map((m) => m.page.evaluate((t0) =>
  window.events.filter((e) => e.at >= t0 && e.ev === 'becomeHub').map((e) => ({ at: e.at, term: `${e.term.number}/${e.term.hub}` })), t0))))
  .flatMap((evs, i) => evs.map((e) => ({ ...e, device: members[i].id, kind: members[i].kind }))).sort((a, b) => a.at - b.at);

test('non-transitive reachability: the hub loses the broker but keeps a data channel; no flapping', { timeout: 360_000 }, async (t) => {
  const venue = `e2e-live-nt-${Date.now().toString(36)}`;
  const ingest = await startIngest({ venue, tcp: broker.tcp });
  t.after(() => ingest.stop());
  const proxy = await startLinkProxy(broker.port);
  t.after(() => proxy.stop());
  // The kiosk reaches the broker through the proxy and has data channels; the
  // phone has no data channel at all (it reaches only the broker).
  const kiosk = await meshMember(browser, proxy.url, venue, 'kiosk', { ...DEFAULT_TIMERS, drain: '2000' });
  const pos = await meshMember(browser, broker.url, venue, 'pos', { ...DEFAULT_TIMERS, drain: '2000' });
  const phone = await meshMember(browser, broker.url, venue, 'phone', { ...DEFAULT_TIMERS, drain: '2000', webrtc: '0' });
  const all = [kiosk, pos, phone];
  t.after(() => Promise.all(all.map((m) => m.context.close().catch(() => {}))));
  await waitFor(async () => (await Promise.all(all.map(state))).every((s) => s.connected && s.hub === kiosk.id), 30_000, 'the kiosk is the hub');
  await Promise.all([kiosk, pos].map((m, i) => enqueueSome(m, `warm${i}`)));
  await waitFor(() => rtcUp(kiosk, [pos]), 30_000, 'a data channel between the kiosk and the pos');

  // Sales keep coming on every device, 5 a second in all.
  let stop = false;
  const ids = [];
  const load = (async () => {
    for (let n = 0; !stop; n++) {
      const m = all[n % 3];
      ids.push(await m.page.evaluate((n) => window.mesh.enqueue('sale', JSON.stringify({ n })), n).catch(() => null));
      await sleep(200);
    }
  })();
  await sleep(3_000);
  const t0 = Date.now();
  proxy.blackhole();
  proxy.reset(); // its broker socket closes (Will at once); reconnects hang
  await sleep(45_000);
  const during = await hubEvents(all, t0);
  console.log(`# 45 s cut off from the broker: hub changes ${JSON.stringify(during.map((e) => `${e.kind}@${e.term}+${Math.round(e.at - t0)}ms`))}`);
  assert.ok(during.length <= 2, `at most 2 hub changes in 45 s, got ${during.length}`);
  const s = await Promise.all(all.map(state));
  assert.equal(s.filter((x) => x.isHub).length, 1, 'one hub at the end of the cut');
  assert.equal(s.find((x) => x.isHub), s[1], 'the pos (broker and channel) is the hub');
  proxy.restore();
  await waitFor(async () => (await state(kiosk)).connected, 60_000, 'the kiosk reconnects');
  await sleep(20_000); // G for the kiosk to take its role back
  stop = true;
  await load;
  const sent = ids.filter(Boolean);
  // A replica placed after its CLOUD_ACK went by (the kiosk, back on the broker, gives the phone
  // copies of sales the pos had already uploaded) used to learn "the cloud has it" only at its
  // holder's re-offer to the hub, after reoffer_after_ms (60 s): 18 such replicas sat at peer_ack
  // in a CI-like run. Such a copy is now offered to the hub at once (handle_stored); 45 s stays
  // below the 60 s re-offer, so the old behaviour fails here.
  const tDrain = Date.now();
  await waitFor(async () => (await Promise.all(all.map(counts))).every((c) => c.pending === 0 && c.peerAck === 0), 45_000,
    'every command cloud-acked everywhere').catch(async (e) => {
    // What is stuck where, so that a failure in CI says why (issue #17's flake).
    const stored = new Set(ingest.query().ids);
    for (const m of all) {
      const d = await m.page.evaluate(() => ({
        state: { connected: window.mesh.connected, hub: window.mesh.hub, isHub: window.mesh.isHub },
        counts: window.mesh.queue.countByStatus(),
        pending: window.mesh.queue.listIds('pending', 20),
        peerAck: window.mesh.queue.listIds('peer_ack', 20),
        stats: (() => { const s = window.mesh.getDetailedStats(); return { replication: s.replication, security: s.security }; })(),
      })).catch((x) => ({ error: String(x) }));
      const stuck = [...(d.pending ?? []), ...(d.peerAck ?? [])].map((id) => `${id}:${stored.has(id) ? 'in-cloud' : 'not-in-cloud'}`);
      console.log(`# stuck on ${m.kind}: ${JSON.stringify({ ...d, pending: undefined, peerAck: undefined, stuck })}`);
    }
    throw e;
  });
  console.log(`# every command cloud-acked everywhere ${Date.now() - tDrain} ms after the load stopped`);
  const q = ingest.query();
  const changes = await hubEvents(all, t0);
  console.log(`# non-transitive run: ${sent.length} commands, ingest ${q.count} stored, ${q.duplicates_absorbed} duplicates absorbed (${(100 * q.duplicates_absorbed / sent.length).toFixed(1)} %), ${changes.length} hub changes in all`);
  assert.ok(sent.every((id) => q.ids.includes(id)), 'no command lost');
  assert.equal(q.count, new Set(sent).size + 6, 'stored once each (warm-up included)');
  assert.ok(q.duplicates_absorbed < 0.05 * sent.length, `duplicates absorbed < 5 %: ${q.duplicates_absorbed}`);
  const terms = new Map();
  for (const e of changes) {
    assert.ok(!terms.has(e.term) || terms.get(e.term) === e.device, `term ${e.term} acted by one device`);
    terms.set(e.term, e.device);
  }
});

test('a holder that missed the cloud acks while away catches up within seconds', { timeout: 180_000 }, async (t) => {
  const venue = `e2e-live-ca-${Date.now().toString(36)}`;
  const ingest = await startIngest({ venue, tcp: broker.tcp });
  t.after(() => ingest.stop());
  const proxy = await startLinkProxy(broker.port);
  t.after(() => proxy.stop());
  const kiosk = await meshMember(browser, broker.url, venue, 'kiosk', { ...DEFAULT_TIMERS, webrtc: '0', drain: '1000' });
  const pos = await meshMember(browser, broker.url, venue, 'pos', { ...DEFAULT_TIMERS, webrtc: '0', drain: '1000' });
  const phone = await meshMember(browser, proxy.url, venue, 'phone', { ...DEFAULT_TIMERS, webrtc: '0', drain: '1000' });
  const all = [kiosk, pos, phone];
  t.after(() => Promise.all(all.map((m) => m.context.close().catch(() => {}))));
  await waitFor(async () => (await Promise.all(all.map(state))).every((s) => s.connected && s.hub === kiosk.id), 30_000, 'the kiosk is the hub');
  ingest.pause(); // the cloud is slow: nothing is acked yet
  const ids = (await Promise.all([kiosk, pos].map((m) => m.page.evaluate(async () => {
    const out = [];
    for (let i = 0; i < 20; i++) out.push(await window.mesh.enqueue('sale', JSON.stringify({ i })));
    return out;
  })))).flat();
  await waitFor(async () => (await counts(phone)).peerAck >= ids.length, 20_000, 'the phone keeps replicas of them');
  proxy.blackhole();
  proxy.reset(); // the phone is away ...
  await waitFor(async () => !(await state(phone)).connected, 10_000, 'the phone is disconnected');
  ingest.resume(); // ... while the cloud acks everything (QoS 1, not retained)
  await waitFor(() => ingest.query().count >= ids.length, 30_000, 'the cloud has every command');
  await waitFor(async () => (await Promise.all([kiosk, pos].map(counts))).every((c) => c.peerAck === 0), 20_000, 'the connected devices got the cloud acks');
  assert.ok((await counts(phone)).peerAck >= ids.length, 'the phone missed them');
  proxy.restore();
  await waitFor(async () => (await state(phone)).connected, 60_000, 'the phone reconnects');
  const t1 = Date.now();
  await waitFor(async () => (await counts(phone)).peerAck === 0, 20_000, 'the phone learns the cloud has them (60 s re-offer before #17)');
  console.log(`# cloud-ack catch-up: ${ids.length} replicas cloud_ack ${Date.now() - t1} ms after the phone reconnected`);
  const q = ingest.query();
  assert.equal(q.count, ids.length, 'stored once each');
});
