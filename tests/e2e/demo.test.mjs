// The demo page as a person opens it: it loads the optimised package, creates
// a device identity that survives reload, connects to the local broker, and
// with several devices on one venue shows the hub, the peers with their
// scores, the local queue draining on its own (pending → peer_ack → cloud_ack,
// through the hub's upload to the reference ingest), the routes to each peer
// (broker, WebRTC, tab) with their breakers, and a chat room over the mesh. Screenshots at iPad sizes go to .run/screenshots/ and are checked for
// content, in the DOM and in the pixels.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openPage, demoUrl, nonLoopbackListeners, privateCloud } from './lib.mjs';
import { device as deviceIn, waitRows, waitTiles, waitListed, waitLogged, waitRepl, screenshot,
  PORTRAIT, LANDSCAPE } from './demo-lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('demo page connects to the broker and shows it', async () => {
  const { page, context, errors } = await openPage(browser, demoUrl({ venue: 'e2e-demo' }));
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 10_000 });
  assert.match(await page.textContent('#broker'), /^ws:\/\/127\.0\.0\.1:\d+/);
  assert.match(await page.textContent('#device-id'), /^[0-9a-f-]{36}$/);
  assert.deepEqual(errors, []);
  await context.close();
});

test('device identity survives a reload and differs between devices', async () => {
  const a = await openPage(browser, demoUrl({ venue: 'e2e-id' }));
  const b = await openPage(browser, demoUrl({ venue: 'e2e-id' }));
  const idOf = async (p) => { await p.waitForFunction(() => window.mesh?.deviceId); return p.evaluate(() => window.mesh.deviceId); };
  const first = await idOf(a.page);
  await a.page.reload();
  assert.equal(await idOf(a.page), first, 'same device after reload');
  assert.notEqual(await idOf(b.page), first, 'another context is another device');
  await a.context.close(); await b.context.close();
});

test('two tabs of one profile are one device, and the page says so', async () => {
  const a = await openPage(browser, demoUrl({ venue: `e2e-tabs-${Date.now()}` }));
  await a.page.waitForSelector('#conn[data-state="connected"]', { timeout: 10_000 });
  const tab2 = await a.context.newPage();
  await tab2.goto(a.page.url());
  await tab2.waitForSelector('#conn[data-state="connected"]', { timeout: 10_000 });
  assert.equal(await tab2.textContent('#device-id'), await a.page.textContent('#device-id'), 'tabs share the device id');
  await tab2.waitForSelector('#banner:not([hidden])', { timeout: 5_000 });
  assert.match(await tab2.textContent('#banner'), /same device/);
  // "Make this tab a new device" gives the tab its own database, so its own id.
  await tab2.click('#banner button');
  await tab2.waitForURL(/[?&]db=vm-demo-[0-9a-f]{8}/);
  await tab2.waitForSelector('#conn[data-state="connected"]', { timeout: 10_000 });
  assert.notEqual(await tab2.textContent('#device-id'), await a.page.textContent('#device-id'));
  assert.deepEqual(a.errors, []);
  await a.context.close();
});

test('nothing of ours listens on a non-loopback address while pages are open', async () => {
  const { context, page } = await openPage(browser, demoUrl({ venue: 'e2e-ss' }));
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 10_000 });
  assert.deepEqual(nonLoopbackListeners(), []);
  await context.close();
});

// --- several devices on one venue ----------------------------------------------

const device = (venue, kind, viewport, broker) => deviceIn(browser, venue, kind, viewport, broker);

test('several devices: the demo shows the hub, the peers with scores, the queue draining to the ingest, the routes per peer and a chat',
  { timeout: 180_000 }, async (t) => {
    const venue = `e2e-demo-mesh-${Date.now()}`;
    // A private broker and the reference ingest for this venue: the cloud end of the hub's upload.
    const { broker, ingest } = await privateCloud(t, venue);
    const kiosk = await device(venue, 'kiosk', PORTRAIT, broker.url);   // the best score: the hub
    const pos = await device(venue, 'pos', LANDSCAPE, broker.url);
    const ipad = await device(venue, 'ipad', PORTRAIT, broker.url);
    const all = [kiosk, pos, ipad];
    const ids = all.map((d) => d.id).sort();

    // Every page lists the three devices with scores and marks the kiosk as hub.
    for (const d of all) {
      const rows = await waitRows(d, 'three devices, the kiosk marked as hub', (rs) =>
        rs.length === 3 && rs.filter((r) => r.hub).length === 1 && rs.find((r) => r.hub).device === kiosk.id);
      assert.deepEqual(rows.map((r) => r.device).sort(), ids);
      for (const r of rows) assert.ok(Number.isFinite(r.score) && r.score > 0, `score of ${r.device}: ${r.score}`);
      assert.equal(rows.find((r) => r.hub).badge, 'HUB');
      const kinds = Object.fromEntries(rows.map((r) => [r.device, r.kind]));
      assert.deepEqual([kinds[kiosk.id], kinds[pos.id], kinds[ipad.id]], ['kiosk', 'pos', 'ipad']);
      assert.equal(await d.page.getAttribute('#hub', 'data-hub'), kiosk.id);
      assert.equal(await d.page.textContent('#device-count'), '3');
    }
    assert.equal(await kiosk.page.textContent('#role'), 'HUB');
    assert.equal(await kiosk.page.getAttribute('#role', 'data-role'), 'hub');
    assert.equal(await pos.page.textContent('#role'), 'follower');
    // The hub is the uploader, and the others say which device that is.
    await kiosk.page.waitForSelector('#uploader[data-uploader="1"]', { timeout: 5_000 });
    assert.match(await kiosk.page.textContent('#uploader'), /this device uploads/);
    await pos.page.waitForFunction((hub) => document.getElementById('uploader').textContent.includes(hub.slice(0, 8)), kiosk.id, { timeout: 5_000 });
    assert.equal(await pos.page.getAttribute('#uploader', 'data-uploader'), '0');
    // No shortcut any more: the statuses move on their own.
    assert.equal(await pos.page.$('#ack-cloud'), null);
    assert.doesNotMatch(await pos.page.textContent('#queue-card'), /shortcut/);
    assert.match(await pos.page.textContent('#queue-note'), /majority[\s\S]*pending[\s\S]*second device/);

    // The broker route with its state and RTT (from getDetailedStats().broker).
    await pos.page.waitForSelector('#route-broker[data-state="up"]');
    await pos.page.waitForFunction(() => /\d+(\.\d)? ms/.test(document.getElementById('route-broker-rtt').textContent), null, { timeout: 10_000 });
    assert.match(await pos.page.textContent('#route-broker-url'), /^ws:\/\/127\.0\.0\.1:\d+/);
    // The routes per peer (getDetailedStats().routes): one row per peer, and the data
    // channels come up between the three pages.
    for (const d of all) {
      const others = ids.filter((id) => id !== d.id);
      try {
        await d.page.waitForFunction((want) => {
          const rows = [...document.querySelectorAll('#routes tbody tr[data-peer]')].map((tr) => tr.dataset.peer).sort();
          return JSON.stringify(rows) === JSON.stringify(want);
        }, others, { timeout: 10_000 });
        await d.page.waitForSelector('#routes tr[data-peer] td[data-route="rtc"][data-state="up"]', { timeout: 15_000 });
      } catch {
        assert.fail(`${d.kind} page: no peer row with an rtc route up; #routes shows:\n${await d.page.innerHTML('#routes tbody')}`);
      }
      for (const route of ['rtc', 'tab', 'broker']) {
        assert.equal((await d.page.$$(`#routes tr[data-peer] td[data-route="${route}"][data-state]`)).length, 2, `${d.kind}: a ${route} cell per peer`);
      }
      const breakers = await d.page.$$eval('#routes td[data-route]', (tds) => tds.map((td) => td.dataset.breaker));
      assert.ok(breakers.every((b) => ['closed', 'open', 'half-open'].includes(b)), `${d.kind}: breaker states ${breakers}`);
    }
    assert.doesNotMatch(await pos.page.textContent('#routes-card'), /not implemented/);

    // The cloud pauses (SIGSTOP): a sale can get no further than peer_ack, which
    // holds it there for the screenshots.
    ingest.pause();
    // Selling an item (a tap on a touch screen) commits it to this device's queue;
    // with the hub and the iPad present a majority of 3 holds it: peer_ack.
    await pos.page.tap('#items button[data-item="Espresso"]');
    await waitTiles(pos, 'the sale held by a majority', { pending: 0, peer_ack: 1, cloud_ack: 0, failed: 0 });
    const [saleId] = await pos.page.evaluate(() => window.mesh.queue.listIds('peer_ack'));
    assert.match(await waitListed(pos, saleId, 'peer_ack'), /Espresso €2\.40/);
    assert.deepEqual(await pos.page.evaluate(() => window.mesh.queue.countByStatus()), { pending: 0, peerAck: 1, cloudAck: 0, failed: 0 });
    await pos.page.waitForSelector('#last-sale[data-status="peer_ack"]', { timeout: 5_000 });
    assert.match(await pos.page.textContent('#last-sale'), new RegExp(`Sold Espresso .*${saleId.slice(-10)}, now peer_ack`));
    await waitLogged(pos, /peer_ack: 1 command/);
    // The hub holds a replica of it (and says whose), not yet in the cloud.
    assert.match(await waitListed(kiosk, saleId, 'peer_ack'), new RegExp(`Espresso[\\s\\S]*replica of ${pos.id.slice(0, 8)}`));
    assert.equal(await kiosk.page.getAttribute(`#queue-list li[data-id="${saleId}"]`, 'data-replica'), '1');
    await waitRepl(kiosk, 'r-held', 1, 'the hub counts the replica it holds');
    // The devices table's Pending column (heartbeats) is back to 0 for the POS.
    await waitRows(kiosk, 'the POS with nothing pending', (rs) => rs.some((r) => r.device === pos.id && r.queue === 0));

    // Picking the device kind in the UI calls setDeviceInfo; the peers see it.
    await ipad.page.tap('#kind button[data-kind="phone"]');
    await ipad.page.waitForSelector('#kind button[data-kind="phone"][aria-pressed="true"]');
    assert.equal(await ipad.page.evaluate(() => window.mesh.getDetailedStats().deviceInfo.kind), 'phone');
    await waitRows(kiosk, 'the iPad now a phone', (rs) => rs.some((r) => r.device === ipad.id && r.kind === 'phone'));

    // Chat over the mesh (joinRoom, send, the `message` event): a message typed on one
    // page shows once on every page, with the sender's short id; presence lists the three.
    for (const d of all) await d.page.waitForSelector('#chat-input:not([disabled])', { timeout: 10_000 });
    assert.match(await pos.page.textContent('#chat-note'), /peer-to-peer over WebRTC[\s\S]*broker[\s\S]*exactly once/);
    assert.doesNotMatch(await pos.page.textContent('#chat-card'), /MqttClient/);
    for (const d of all) await d.page.waitForSelector('#chat-presence[data-count="3"]', { timeout: 5_000 });
    const chatLines = (d, text) => d.page.$$eval('#chat-log li', (lis, t) => lis
      .filter((li) => li.querySelector('.text')?.textContent === t)
      .map((li) => ({ from: li.querySelector('.from').textContent, mine: li.classList.contains('mine') })), text);
    const say = async (d, text) => {
      await d.page.fill('#chat-input', text);
      await d.page.press('#chat-input', 'Enter');
      for (const o of all) {
        await o.page.waitForFunction((t) => [...document.querySelectorAll('#chat-log .text')].some((n) => n.textContent === t), text, { timeout: 10_000 })
          .catch(async () => assert.fail(`${o.kind} page: "${text}" from ${d.kind} not in the chat; it shows ${await o.page.textContent('#chat-log')}`));
      }
    };
    await say(pos, 'two espressos for table 4');
    await say(kiosk, 'coming up');
    await pos.page.waitForTimeout(1000); // room for a duplicate to show, if one came
    for (const [text, from] of [['two espressos for table 4', pos], ['coming up', kiosk]]) {
      for (const o of all) {
        const lines = await chatLines(o, text);
        assert.equal(lines.length, 1, `${o.kind} page shows "${text}" once: ${JSON.stringify(lines)}`);
        if (o === from) assert.deepEqual(lines[0], { from: 'me', mine: true });
        else assert.match(lines[0].from, new RegExp(`^${from.id.slice(0, 8)} \\(${from.kind}\\)`), `${o.kind} page names the sender`);
      }
    }

    // iPad-size screenshots while the sale waits for the cloud, checked for content.
    await kiosk.page.evaluate(() => window.scrollTo(0, 0));
    await pos.page.evaluate(() => window.scrollTo(0, 0));
    await screenshot(kiosk, 'demo-ipad-portrait-hub', { pending: 0, peer_ack: 1, cloud_ack: 0 });
    await screenshot(pos, 'demo-ipad-landscape-pos', { pending: 0, peer_ack: 1, cloud_ack: 0 });

    // The cloud is back: the hub's upload is stored and acked, and the sale turns
    // cloud_ack on its own, on the POS and on the hub.
    ingest.resume();
    await waitTiles(pos, 'the sale acked by the cloud', { pending: 0, peer_ack: 0, cloud_ack: 1, failed: 0 });
    assert.match(await waitListed(pos, saleId, 'cloud_ack'), /Espresso €2\.40/);
    assert.deepEqual(await pos.page.evaluate(() => window.mesh.queue.countByStatus()), { pending: 0, peerAck: 0, cloudAck: 1, failed: 0 });
    await waitLogged(pos, /cloud_ack: 1 command/);
    await pos.page.waitForSelector('#last-sale[data-status="cloud_ack"]', { timeout: 5_000 });
    await waitListed(kiosk, saleId, 'cloud_ack');
    await waitRepl(kiosk, 'r-batches', 1, 'the hub counts its upload batch');
    await waitRepl(kiosk, 'r-cloud', 1, 'the hub counts the cloud ack');
    // The ingest stored it once, as sold.
    const stored = ingest.query({ rows: true });
    assert.deepEqual(stored.ids, [saleId], 'the ingest holds the sale');
    const row = stored.rows[0];
    assert.equal(row.origin, pos.id);
    assert.equal(row.topic, 'pos/transaction');
    assert.deepEqual(JSON.parse(Buffer.from(row.payload_hex, 'hex').toString()).item, 'Espresso');
    await pos.page.evaluate(() => window.scrollTo(0, 0));
    await screenshot(pos, 'demo-ipad-landscape-pos-cloud-ack', { pending: 0, peer_ack: 0, cloud_ack: 1 });

    // The hub's page closes: the others show the next hub (the POS), which now uploads.
    await kiosk.context.close();
    for (const d of [pos, ipad]) {
      await waitRows(d, 'two devices, the POS marked as hub', (rs) =>
        rs.length === 2 && rs.some((r) => r.hub && r.device === pos.id));
    }
    assert.equal(await pos.page.textContent('#role'), 'HUB');
    await pos.page.waitForSelector('#uploader[data-uploader="1"]', { timeout: 5_000 });
    await screenshot(ipad, 'demo-ipad-portrait-after-failover', { pending: 0 });

    // A sale on the iPad drains through the new hub: two of three devices is a
    // majority, and the ingest stores it.
    const idsOn = (d) => d.page.evaluate(() => ['pending', 'peer_ack', 'cloud_ack', 'failed'].flatMap((st) => window.mesh.queue.listIds(st)));
    const known = new Set(await idsOn(ipad));
    await ipad.page.tap('#items button[data-item="Water"]');
    let waterId;
    for (const until = Date.now() + 10_000; !waterId && Date.now() < until; await ipad.page.waitForTimeout(100)) {
      waterId = (await idsOn(ipad)).find((id) => !known.has(id));
    }
    assert.ok(waterId, 'the sale was committed on the iPad');
    assert.match(await waitListed(ipad, waterId, 'cloud_ack'), /Water €1\.50/);
    await waitListed(pos, waterId, 'cloud_ack'); // the hub held a replica
    assert.deepEqual(ingest.query().ids.sort(), [saleId, waterId].sort(), 'the ingest holds both sales, once each');

    // The broker (and the cloud behind it) stops: the two pages say the device mesh
    // carries on over their data channel, and a sale still reaches peer_ack.
    await broker.stop();
    for (const d of [pos, ipad]) {
      await d.page.waitForSelector('#conn[data-state="direct"]', { timeout: 10_000 });
      assert.equal(await d.page.textContent('#conn'), 'device mesh');
      assert.match(await d.page.textContent('#route-broker-state'), /down · device mesh on/);
    }
    await pos.page.tap('#items button[data-item="Espresso"]');
    await waitTiles(pos, 'an offline sale held by the two devices', { pending: 0, peer_ack: 1, cloud_ack: 2, failed: 0 });
    assert.equal(await pos.page.textContent('#role'), 'HUB', 'still the hub without a broker');
    await pos.page.evaluate(() => window.scrollTo(0, 0));
    await screenshot(pos, 'demo-ipad-landscape-device-mesh', { pending: 0, peer_ack: 1, cloud_ack: 2 });

    for (const d of all) assert.deepEqual(d.errors.map(String), [], `${d.kind}: uncaught errors in the page`);
    await pos.context.close();
    await ipad.context.close();
  });

test('the shared price list: a price edited on one device shows on the other, a sale there takes from the shared stock', { timeout: 60_000 }, async (t) => {
  const venue = `e2e-prices-${Date.now().toString(36)}`;
  const { broker } = await privateCloud(t, venue);
  const a = await device(venue, 'kiosk', LANDSCAPE, broker.url);
  const b = await device(venue, 'ipad', PORTRAIT, broker.url);
  const priceOf = (d) => d.page.$eval('#prices tr[data-sku="juice"] input', (i) => Number(i.value));
  const stockOf = (d) => d.page.$eval('#prices tr[data-sku="juice"] [data-stock]', (td) => Number(td.dataset.stock));
  // Edited on a (the page's own change handler, as a person typing would).
  await a.page.fill('#prices tr[data-sku="juice"] input', '4.2');
  await a.page.dispatchEvent('#prices tr[data-sku="juice"] input', 'change');
  await b.page.waitForFunction(() => Number(document.querySelector('#prices tr[data-sku="juice"] input')?.value) === 4.2,
    null, { timeout: 15_000 });
  assert.equal(await priceOf(b), 4.2);
  const before = await stockOf(a);
  await b.page.click('#prices button[data-sell="juice"]');
  await a.page.waitForFunction((n) => Number(document.querySelector('#prices tr[data-sku="juice"] [data-stock]')?.dataset.stock) === n,
    before - 1, { timeout: 15_000 });
  assert.equal(await stockOf(b), before - 1, 'both show the stock after the sale');
  for (const d of [a, b]) assert.deepEqual(d.errors, []);
  await Promise.all([a, b].map((d) => d.context.close()));
});
