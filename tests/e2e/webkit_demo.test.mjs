// e2e engines: webkit
// The demo page in WebKit (Safari's engine: Debian's WebKitGTK MiniBrowser
// over WebDriver) at iPad sizes, 1024×1366 and 1366×1024, checked like the
// Chromium ones in demo.test.mjs (same helpers, demo-lib.mjs): it connects,
// keeps its device id over a reload, shows the hub and the devices, a sale
// going pending → peer_ack → cloud_ack through the hub's upload to the
// reference ingest, a chat over the broker, and says what this browser
// lacks (WebRTC: the WebRTC column reads n/a; no persistent storage).
// Screenshots: .run/screenshots/webkit-demo-*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchWebKit, openPage, demoUrl, privateCloud } from './lib.mjs';
import { device as deviceIn, waitRows, waitTiles, waitListed, waitLogged, waitRepl, screenshot,
  PORTRAIT, LANDSCAPE } from './demo-lib.mjs';

let browser;
before(async () => { browser = await launchWebKit(); });
after(async () => { await browser?.close(); });

test('in WebKit the demo connects, keeps its device id over a reload, and says its storage is best effort', async () => {
  const a = await openPage(browser, demoUrl({ venue: `e2e-wk-id-${Date.now()}` }));
  try {
    await a.page.waitForSelector('#conn[data-state="connected"]', { timeout: 10_000 });
    assert.match(await a.page.textContent('#broker'), /^ws:\/\/127\.0\.0\.1:\d+/);
    const id = await a.page.textContent('#device-id');
    assert.match(id, /^[0-9a-f-]{36}$/);
    // No navigator.storage in this WebKit: the queue says best effort rather than "unknown".
    await a.page.waitForFunction(() => /best effort/.test(document.getElementById('storage').textContent), null, { timeout: 5_000 });
    await a.page.reload();
    await a.page.waitForSelector('#conn[data-state="connected"]', { timeout: 10_000 });
    assert.equal(await a.page.textContent('#device-id'), id, 'same device after a reload');
    assert.deepEqual(a.errors.map(String), []);
  } finally {
    await a.context.close();
  }
});

test('two WebKit iPads: hub, devices, a sale to peer_ack and cloud_ack, a chat, the WebRTC column n/a; screenshots at iPad sizes',
  { timeout: 150_000 }, async (t) => {
    const venue = `e2e-wk-demo-${Date.now()}`;
    const { broker, ingest } = await privateCloud(t, venue);
    const kiosk = await deviceIn(browser, venue, 'kiosk', PORTRAIT, broker.url); // the best score: the hub
    t.after(() => kiosk.context.close());
    const pos = await deviceIn(browser, venue, 'pos', LANDSCAPE, broker.url);
    t.after(() => pos.context.close());
    const all = [kiosk, pos];
    for (const d of all) {
      assert.deepEqual(await d.page.evaluate(() => [innerWidth, innerHeight]), [d.page.viewportSize().width, d.page.viewportSize().height],
        `${d.kind}: the viewport is the iPad size`);
      const rows = await waitRows(d, 'both devices, the kiosk marked as hub', (rs) =>
        rs.length === 2 && rs.filter((r) => r.hub).length === 1 && rs.find((r) => r.hub).device === kiosk.id);
      for (const r of rows) assert.ok(Number.isFinite(r.score) && r.score > 0, `score of ${r.device}: ${r.score}`);
      assert.equal(await d.page.textContent('#device-count'), '2');
    }
    assert.equal(await kiosk.page.textContent('#role'), 'HUB');
    assert.equal(await pos.page.textContent('#role'), 'follower');
    await kiosk.page.waitForSelector('#uploader[data-uploader="1"]', { timeout: 5_000 });

    // Routes: each page has a row for the other; no WebRTC in this browser (the cell
    // says n/a, a note says why), no tab between two profiles, the broker carries it.
    for (const d of all) {
      const other = all.find((o) => o !== d).id;
      await d.page.waitForSelector(`#routes tr[data-peer="${other}"] td[data-route="broker"][data-state="up"][data-best="1"]`, { timeout: 10_000 });
      assert.equal(await d.page.getAttribute(`#routes tr[data-peer="${other}"] td[data-route="rtc"]`, 'data-state'), 'unavailable');
      assert.equal((await d.page.textContent(`#routes tr[data-peer="${other}"] td[data-route="rtc"] .chip`)).trim(), 'n/a');
      await d.page.waitForSelector('#routes-local', { timeout: 5_000 });
      assert.match(await d.page.textContent('#routes-local'), /no WebRTC[\s\S]*tabs and the broker/);
    }

    // The cloud pauses: a sale (a tap, a click here) stops at peer_ack, held by both iPads.
    ingest.pause();
    await pos.page.tap('#items button[data-item="Espresso"]');
    await waitTiles(pos, 'the sale held by a majority', { pending: 0, peer_ack: 1, cloud_ack: 0, failed: 0 });
    const [saleId] = await pos.page.evaluate(() => window.mesh.queue.listIds('peer_ack'));
    assert.match(await waitListed(pos, saleId, 'peer_ack'), /Espresso €2\.40/);
    await waitLogged(pos, /peer_ack: 1 command/);
    assert.match(await waitListed(kiosk, saleId, 'peer_ack'), new RegExp(`Espresso[\\s\\S]*replica of ${pos.id.slice(0, 8)}`));
    await waitRepl(kiosk, 'r-held', 1, 'the hub counts the replica it holds');

    // Chat over the broker (the only route between these two): each line once on each page.
    for (const d of all) await d.page.waitForSelector('#chat-presence[data-count="2"]', { timeout: 10_000 });
    for (const [from, text] of [[pos, 'a latte for table 2'], [kiosk, 'on its way']]) {
      await from.page.fill('#chat-input', text);
      await from.page.press('#chat-input', 'Enter');
      for (const o of all) {
        await o.page.waitForFunction((x) => [...document.querySelectorAll('#chat-log .text')].filter((n) => n.textContent === x).length === 1,
          text, { timeout: 10_000 }).catch(async () => assert.fail(`${o.kind}: "${text}" not shown once; the chat shows ${await o.page.textContent('#chat-log')}`));
      }
    }

    for (const d of all) await d.page.evaluate(() => window.scrollTo(0, 0));
    await screenshot(kiosk, 'webkit-demo-ipad-portrait-hub', { pending: 0, peer_ack: 1, cloud_ack: 0 });
    await screenshot(pos, 'webkit-demo-ipad-landscape-pos', { pending: 0, peer_ack: 1, cloud_ack: 0 });

    // The cloud is back: the WebKit hub uploads, the sale turns cloud_ack on both.
    ingest.resume();
    await waitTiles(pos, 'the sale acked by the cloud', { pending: 0, peer_ack: 0, cloud_ack: 1, failed: 0 });
    await waitListed(kiosk, saleId, 'cloud_ack');
    await waitRepl(kiosk, 'r-cloud', 1, 'the hub counts the cloud ack');
    assert.deepEqual(ingest.query().ids, [saleId], 'the ingest holds the sale, once');
    await pos.page.evaluate(() => window.scrollTo(0, 0));
    await screenshot(pos, 'webkit-demo-ipad-landscape-pos-cloud-ack', { pending: 0, peer_ack: 0, cloud_ack: 1 });
    for (const d of all) assert.deepEqual(d.errors.map(String), [], `${d.kind}: uncaught errors in the page`);
  });
