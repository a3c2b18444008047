// Seed 000's "both down" case with real pages: three devices replicate over
// WebRTC data channels (which their replication traffic opened), then the
// broker — and with it the cloud — stops. The hub stays hub, commands still
// reach peer_ack over the data channels; the hub page is closed and the two
// others elect a new hub over them; when the broker returns, the new hub
// drains everything to the reference ingest and the survivors mark it all
// cloud_ack.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, startBroker, startIngest, sleep, meshMember, waitFor, assertIceInTestNetwork } from './lib.mjs';


let browser, broker, ingest;
before(async () => {
  browser = await launch();
  broker = await startBroker();
});
after(async () => {
  await ingest?.stop();
  await browser?.close();
  await broker?.stop();
});


const enqueue = (m, n, tag) => m.page.evaluate(async ([n, tag]) => {
  const ids = [];
  for (let i = 0; i < n; i++) ids.push(await window.mesh.enqueue('sale', JSON.stringify({ tag, i })));
  return ids;
}, [n, tag]);
const counts = (m) => m.page.evaluate(() => window.mesh.queue.countByStatus());
const stats = (m) => m.page.evaluate(() => window.mesh.getDetailedStats());
const hubOf = (m) => m.page.evaluate(() => window.mesh.hub);
const rtcUpTo = async (m, others) => {
  const s = await stats(m);
  return others.every((o) => s.routes.peers.find((p) => p.device === o.id)?.routes.find((r) => r.route === 'rtc')?.up);
};

test('broker and cloud down: election and replication go on over data channels', { timeout: 120_000 }, async () => {
  const venue = `e2e-dmesh-${Date.now().toString(36)}`;
  ingest = await startIngest({ venue, tcp: broker.tcp });
  const opts = { drain: '500' };
  const kiosk = await meshMember(browser, broker.url, venue, 'kiosk', opts);
  const pos = await meshMember(browser, broker.url, venue, 'pos', opts);
  const ipad = await meshMember(browser, broker.url, venue, 'ipad', { ...opts, charging: '1' });
  const all = [kiosk, pos, ipad];
  await waitFor(async () => (await Promise.all(all.map(hubOf))).every((h) => h === kiosk.id), 10_000, 'the kiosk is the hub');

  // Replication partners get data channels: the first commands open them.
  const warm = (await Promise.all(all.map((m, i) => enqueue(m, 5, `warm${i}`)))).flat();
  await waitFor(async () => (await Promise.all(all.map((m) => rtcUpTo(m, all.filter((o) => o !== m))))).every(Boolean),
    30_000, 'data channels between every pair');
  console.log(`data channels use ${(await assertIceInTestNetwork(all.map((m) => m.page))).join(', ')}`);
  await waitFor(() => ingest.query().count >= warm.length, 20_000, 'the warm-up commands are in the cloud');

  await broker.stop(); // the ingest's only way in is gone too
  await waitFor(async () => (await Promise.all(all.map((m) => m.page.evaluate(() => window.mesh.connected)))).every((c) => !c),
    10_000, 'every page lost the broker');
  const t0 = Date.now();
  await sleep(3_000); // ten heartbeat intervals: silence would have removed peers and the hub by now
  for (const m of all) {
    const s = await stats(m);
    assert.equal(s.reachable, true, `${m.kind}: the election runs over data channels`);
    assert.equal(s.hub?.hub, kiosk.id, `${m.kind}: the same hub`);
    assert.equal(s.peers.length, 2, `${m.kind}: both peers still present`);
    const churn = await m.page.evaluate((t0) => window.events.filter((e) => e.at >= t0 - 500 && ['peerLeft', 'loseHub', 'hubChanged'].includes(e.ev)), t0);
    assert.deepEqual(churn, [], `${m.kind}: no peer or hub churn`);
  }
  const offline = (await Promise.all(all.map((m, i) => enqueue(m, 20, `off${i}`)))).flat();
  await waitFor(async () => (await Promise.all(all.map(counts))).every((c) => c.pending === 0), 15_000,
    'commands enqueued without a broker reach peer_ack');
  const direct = (await stats(pos)).traffic.direct;
  assert.ok(direct.msgsIn > 0 && direct.msgsOut > 0, `pos: mesh traffic on data channels ${JSON.stringify(direct)}`);

  // The hub goes away; the other two elect a new one over their channel.
  const t1 = Date.now();
  await kiosk.context.close();
  await waitFor(async () => {
    const hubs = await Promise.all([pos, ipad].map(hubOf));
    return hubs[0] === pos.id && hubs[1] === pos.id;
  }, 15_000, 'pos becomes the hub without a broker');
  console.log(`# broker down: new hub over data channels ${Date.now() - t1} ms after the hub page closed`);
  const later = await enqueue(ipad, 10, 'after');
  await waitFor(async () => (await counts(ipad)).pending === 0, 15_000, 'the quorum of the two survivors');

  // The broker (and the cloud behind it) comes back on the same ports.
  broker = await startBroker({ port: broker.port, tcp: broker.tcp });
  const ids = new Set([...warm, ...offline, ...later]);
  await waitFor(() => ingest.query().count >= ids.size, 45_000, `the ingest holds all ${ids.size} commands`);
  const got = ingest.query();
  assert.deepEqual(new Set(got.ids), ids, 'exactly the enqueued ids');
  await waitFor(async () => (await Promise.all([pos, ipad].map(counts))).every((c) => c.pending === 0 && c.peerAck === 0),
    30_000, 'the survivors mark everything cloud_ack');
  for (const m of [pos, ipad]) assert.deepEqual(m.errors, []);
  await Promise.all([pos, ipad].map((m) => m.context.close()));
});
