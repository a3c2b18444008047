// The demo page as a person opens it: it loads the optimised package, creates
// a device identity that survives reload, connects to the local broker, and
// with several devices on one venue shows the hub, the peers with their
// scores, the local queue, the broker route and a chat. Screenshots at iPad
// sizes go to .run/screenshots/ and are checked for content, in the DOM and
// in the pixels.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { launch, openPage, demoUrl, nonLoopbackListeners, BASE } from './lib.mjs';

const SHOTS = fileURLToPath(new URL('../../.run/screenshots/', import.meta.url));
const PORTRAIT = { width: 1024, height: 1366 };
const LANDSCAPE = { width: 1366, height: 1024 };
const HUB_RGB = [0xf5, 0xa6, 0x23]; // --hub in www/style.css

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

/** One device: its own context (own IndexedDB), a touch screen of `viewport`. */
async function device(venue, kind, viewport) {
  const context = await browser.newContext({ viewport, hasTouch: true, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(`${BASE}${demoUrl({ venue, kind, hb: '300' })}`);
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 10_000 });
  const id = (await page.textContent('#device-id')).trim();
  return { context, page, errors, id, kind };
}

/** The rows of the devices table as the page shows them. */
const rowsOf = (d) => d.page.$$eval('#devices tbody tr', (trs) => trs.map((tr) => ({
  device: tr.dataset.device,
  hub: tr.dataset.hub === '1',
  kind: tr.cells[1].textContent,
  score: Number(tr.cells[2].textContent),
  badge: tr.cells[3].textContent,
  queue: Number(tr.cells[5].textContent),
})));

/** Waits until `check(rows)` holds on the page; fails with what it last saw. */
async function waitRows(d, what, check, ms = 15_000) {
  const until = Date.now() + ms;
  let rows = [];
  while (Date.now() < until) {
    rows = await rowsOf(d);
    if (check(rows)) return rows;
    await d.page.waitForTimeout(100);
  }
  assert.fail(`${d.kind} page: ${what}; it shows ${JSON.stringify(rows)}`);
}

/** The box of the first `selector` match, measured in one go (the page re-renders every second). */
const boxOf = (page, selector) => page.evaluate((sel) => {
  const e = document.querySelector(sel);
  if (!e) return null;
  const r = e.getBoundingClientRect();
  return { x: r.x, y: r.y, width: r.width, height: r.height };
}, selector);

/** Whether the element's box lies inside the viewport (it is in a viewport screenshot). */
async function inViewport(page, selector) {
  const box = await boxOf(page, selector);
  const vp = page.viewportSize();
  return !!box && box.width > 0 && box.height > 0 && box.x >= 0 && box.y >= 0 &&
    box.x + box.width <= vp.width && box.y + box.height <= vp.height;
}

/**
 * Pixel figures of a PNG, decoded by the browser: distinct colours (5 bits a
 * channel), the share of pixels unlike the page background, and in `box` the
 * share of pixels near `rgb`.
 */
async function pixels(png, box, rgb) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  try {
    return await page.evaluate(async ([b64, box, rgb]) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      const g = c.getContext('2d');
      g.drawImage(img, 0, 0);
      const all = g.getImageData(0, 0, c.width, c.height).data;
      const colours = new Set();
      let unlikeBg = 0;
      const bg = [0xee, 0xf1, 0xf5]; // --bg
      for (let i = 0; i < all.length; i += 4) {
        colours.add(((all[i] >> 3) << 10) | ((all[i + 1] >> 3) << 5) | (all[i + 2] >> 3));
        if (Math.abs(all[i] - bg[0]) + Math.abs(all[i + 1] - bg[1]) + Math.abs(all[i + 2] - bg[2]) > 24) unlikeBg++;
      }
      const part = g.getImageData(Math.round(box.x), Math.round(box.y), Math.max(1, Math.round(box.width)), Math.max(1, Math.round(box.height))).data;
      let near = 0;
      for (let i = 0; i < part.length; i += 4) {
        if (Math.abs(part[i] - rgb[0]) + Math.abs(part[i + 1] - rgb[1]) + Math.abs(part[i + 2] - rgb[2]) < 60) near++;
      }
      return { width: c.width, height: c.height, colours: colours.size,
        unlikeBg: unlikeBg / (all.length / 4), badgeShare: near / (part.length / 4) };
    }, [png.toString('base64'), box, rgb]);
  } finally {
    await ctx.close();
  }
}

/** An iPad-size screenshot of `d`, saved and checked: hub badge, ≥ 2 devices, queue counts. */
async function screenshot(d, name, { pending }) {
  const { page } = d;
  const vp = page.viewportSize();
  const badge = await boxOf(page, '#devices tr[data-hub] .badge-hub');
  // Saved first, so that a failed check below leaves the picture to look at.
  const png = await page.screenshot({ fullPage: false });
  mkdirSync(SHOTS, { recursive: true });
  writeFileSync(`${SHOTS}${name}.png`, png);
  // What a person sees without scrolling: the hub badge, the devices, the queue counts.
  assert.ok(await inViewport(page, '#devices tr[data-hub] .badge-hub'), `${name}: the hub badge is on screen`);
  const rows = await page.$$('#devices tbody tr');
  assert.ok(rows.length >= 2, `${name}: at least two devices listed`);
  for (const sel of ['#devices tbody tr:nth-child(2)', '#q-pending', '#q-cloud_ack', '#pos-card .item']) {
    assert.ok(await inViewport(page, sel), `${name}: ${sel} is on screen`);
  }
  assert.equal(await page.textContent('#q-pending'), String(pending), `${name}: pending count shown`);
  assert.match(await page.textContent('#role'), /^(HUB|follower)$/);

  assert.ok(badge, `${name}: the hub badge was measured`);
  const px = await pixels(png, badge, HUB_RGB);
  assert.deepEqual([px.width, px.height], [vp.width, vp.height], `${name}: iPad-size image`);
  assert.ok(px.colours > 40, `${name}: ${px.colours} distinct colours (a blank page has a handful)`);
  assert.ok(px.unlikeBg > 0.3, `${name}: ${(px.unlikeBg * 100).toFixed(0)}% of the pixels are content`);
  assert.ok(px.badgeShare > 0.4, `${name}: the hub badge is drawn in the hub colour (${(px.badgeShare * 100).toFixed(0)}%)`);
  return px;
}

test('several devices: the demo shows the hub, the peers with scores, the queue, the broker route and a chat', { timeout: 120_000 }, async () => {
  const venue = `e2e-demo-mesh-${Date.now()}`;
  const kiosk = await device(venue, 'kiosk', PORTRAIT);   // the best score: the hub
  const pos = await device(venue, 'pos', LANDSCAPE);
  const ipad = await device(venue, 'ipad', PORTRAIT);
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

  // The broker route with its state and RTT (from getDetailedStats().broker).
  await pos.page.waitForSelector('#route-broker[data-state="up"]');
  await pos.page.waitForFunction(() => /\d+(\.\d)? ms/.test(document.getElementById('route-broker-rtt').textContent), null, { timeout: 10_000 });
  assert.match(await pos.page.textContent('#route-broker-url'), /^ws:\/\/127\.0\.0\.1:\d+/);
  assert.match(await pos.page.textContent('#routes'), /WebRTC[\s\S]*not implemented yet/);

  // Selling an item (a tap on a touch screen) adds a pending entry to this device's queue…
  await pos.page.tap('#items button[data-item="Espresso"]');
  await pos.page.waitForSelector('#q-pending[data-count="1"]', { timeout: 10_000 });
  await pos.page.waitForSelector('#queue-list li[data-status="pending"]', { timeout: 5_000 });
  assert.match(await pos.page.textContent('#queue-list li[data-status="pending"]'), /Espresso €2\.40/);
  assert.deepEqual(await pos.page.evaluate(() => window.mesh.queue.countByStatus()), { pending: 1, peerAck: 0, cloudAck: 0, failed: 0 });
  assert.match(await pos.page.textContent('#last-sale'), /Sold Espresso .*pending/);
  // …and the hub's page sees its depth in the POS's heartbeats.
  await waitRows(kiosk, 'the POS with one queued command', (rs) => rs.some((r) => r.device === pos.id && r.queue === 1));

  // Picking the device kind in the UI calls setDeviceInfo; the peers see it.
  await ipad.page.tap('#kind button[data-kind="phone"]');
  await ipad.page.waitForSelector('#kind button[data-kind="phone"][aria-pressed="true"]');
  assert.equal(await ipad.page.evaluate(() => window.mesh.getDetailedStats().deviceInfo.kind), 'phone');
  await waitRows(kiosk, 'the iPad now a phone', (rs) => rs.some((r) => r.device === ipad.id && r.kind === 'phone'));

  // Chat over MqttClient (vm/{venue}/topic/chat) reaches the other pages.
  for (const d of all) await d.page.waitForSelector('#chat-input:not([disabled])', { timeout: 10_000 });
  await pos.page.fill('#chat-input', 'two espressos for table 4');
  await pos.page.press('#chat-input', 'Enter');
  await kiosk.page.waitForFunction(() => document.getElementById('chat-log').textContent.includes('two espressos for table 4'), null, { timeout: 10_000 });

  // iPad-size screenshots, checked for content.
  await kiosk.page.evaluate(() => window.scrollTo(0, 0));
  await pos.page.evaluate(() => window.scrollTo(0, 0));
  await screenshot(kiosk, 'demo-ipad-portrait-hub', { pending: 0 });
  await screenshot(pos, 'demo-ipad-landscape-pos', { pending: 1 });

  // The demo shortcut moves the pending sale to cloud_ack (nothing is uploaded).
  await pos.page.tap('#ack-cloud');
  await pos.page.waitForSelector('#q-cloud_ack[data-count="1"]', { timeout: 5_000 });
  await pos.page.waitForSelector('#q-pending[data-count="0"]');
  await pos.page.waitForSelector('#queue-list li[data-status="cloud_ack"]', { timeout: 5_000 });
  assert.match(await pos.page.textContent('#queue-card'), /demo shortcut/);

  // The hub's page closes: the others show the next hub (the POS).
  await kiosk.context.close();
  for (const d of [pos, ipad]) {
    await waitRows(d, 'two devices, the POS marked as hub', (rs) =>
      rs.length === 2 && rs.some((r) => r.hub && r.device === pos.id));
  }
  assert.equal(await pos.page.textContent('#role'), 'HUB');
  await screenshot(ipad, 'demo-ipad-portrait-after-failover', { pending: 0 });

  for (const d of all) assert.deepEqual(d.errors.map(String), [], `${d.kind}: uncaught errors in the page`);
  await pos.context.close();
  await ipad.context.close();
});
